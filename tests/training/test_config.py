"""The phase settings (training/config.py): validated as `kedro run` does, named by their
parameter path, each phase only its own."""

from __future__ import annotations

import pytest
from test_loop import GEN, cfg, tiny_critic
from test_patches import loader

from srgan_pipeline.checkpoints import build_generator
from srgan_pipeline.training import train_adversarial


def test_phase_settings_are_validated_and_named_by_their_parameter_path():
    c = cfg(betas=[0.5, 0.99], lr=1.0, max_minutes=3.0)
    assert c.betas == (0.5, 0.99) and c.lr == 1.0 and c.ema_decay is None
    bad = [
        ({"lr_g": 1e-4}, r"train_gan\.pretrain\.lr_g: unknown key; valid keys: iterations, "),
        ({"lr": -1.0}, r"train_gan\.pretrain\.lr: must be > 0, got -1"),
        ({"lr": float("inf")}, r"train_gan\.pretrain\.lr: must be a finite number, got inf"),
        ({"lr": "1e-4"}, r"train_gan\.pretrain\.lr: must be a number, got '1e-4'"),
        ({"iterations": 2.5}, r"train_gan\.pretrain\.iterations: must be an integer, got 2\.5"),
        ({"betas": [0.9, 1.0]}, r"train_gan\.pretrain\.betas\[1\]: must be < 1, got 1\.0"),
        ({"betas": [0.9]}, r"train_gan\.pretrain\.betas: must be a pair of numbers"),
        ({"pixel_loss": "l2"}, r"train_gan\.pretrain\.pixel_loss: must be 'mse' or 'l1'"),
        ({"channels_last": "yes"}, r"train_gan\.pretrain\.channels_last: must be true or false"),
        ({"amp_bf16": "yes"}, r"train_gan\.pretrain\.amp_bf16: must be true, false or 'auto', "
                              r"got 'yes'$"),
        ({"max_minutes": 0}, r"train_gan\.pretrain\.max_minutes: must be > 0, got 0"),
    ]
    for overrides, message in bad:
        with pytest.raises(ValueError, match=message):
            cfg(**overrides)
    with pytest.raises(ValueError, match=r"train_gan\.adversarial\.n_critic: must be an integer"):
        cfg("adversarial", n_critic=True)
    with pytest.raises(ValueError, match=r"train_gan\.adversarial\.gp_weight: must be >= 0"):
        cfg("adversarial", gp_weight=-1.0)

def test_each_phase_takes_only_its_own_settings(perceptual):
    with pytest.raises(ValueError, match=r"train_gan\.adversarial\.ema_decay: unknown key"):
        cfg("adversarial", ema_decay=0.9)
    with pytest.raises(ValueError, match=r"train_gan\.pretrain\.n_critic: unknown key"):
        cfg("pretrain", n_critic=2)
    with pytest.raises(TypeError, match=r"adversarial takes params\.AdversarialParams"):
        train_adversarial(build_generator(GEN), tiny_critic(), loader(), perceptual,
                          cfg(iterations=1))
