"""Phase 2 (training/adversarial.py): WGAN-GP with n_critic critic steps per generator step."""

from __future__ import annotations

import math

import pytest
import torch
from test_loop import GEN, Recorder, cfg, tiny_critic
from test_patches import loader

from srgan_pipeline.checkpoints import build_generator
from srgan_pipeline.models import Critic
from srgan_pipeline.training import pretrain, train_adversarial

pytestmark = pytest.mark.usefixtures("one_thread")

GAN_METRICS = {
    "gan/pixel",
    "gan/perceptual",
    "gan/adversarial",
    "gan/generator_total",
    "critic/wasserstein_distance",
    "critic/gradient_penalty",
    "critic/loss",
    "time/iters_per_sec",
    "time/data_wait_share",
    "time/elapsed_s",
}


def test_adversarial_runs_n_critic_steps_and_logs_everything(tmp_path, perceptual):
    counts = {"batches": 0}

    def counting(batches):
        for b in batches:
            counts["batches"] += 1
            yield b

    generator = build_generator(GEN, seed=0)
    pre = pretrain(generator, loader(), perceptual, cfg(iterations=2))
    pre_weights = {k: v.clone() for k, v in pre["generator"].items()}
    rec, critic = Recorder(tmp_path), tiny_critic()
    state = train_adversarial(
        generator,
        critic,
        counting(loader()),
        perceptual,
        cfg("adversarial", iterations=3, n_critic=3, log_every=3),
        start=pre,
        on_log=rec.on_log,
        on_checkpoint=rec.on_checkpoint,
    )
    assert counts == {"batches": 12}  # 3 x (3 critic + 1 generator) batches
    # Adam counts its own updates: 3 critic updates per generator update
    assert state["optimizer_c"]["state"][0]["step"].item() == 9
    assert state["optimizer_g"]["state"][0]["step"].item() == 3
    assert state["phase"] == "adversarial" and state["step"] == 3 and state["batches"] == 12
    assert [s for s, _ in rec.logs] == [3] and set(rec.logs[0][1]) == GAN_METRICS
    assert all(math.isfinite(v) for v in rec.logs[0][1].values())
    assert all(p.requires_grad for p in critic.parameters())  # unfrozen after the G steps
    # Returned states are snapshots, not views of the live weights that kept training.
    assert all(torch.equal(v, pre["generator"][k]) for k, v in pre_weights.items())
    assert not torch.equal(pre["generator"]["tail.weight"], generator.tail.weight.detach())
    saved = rec.saved[-1]
    assert saved["critic"] is not None and saved["optimizer_c"]["param_groups"][0]["betas"] == (
        0.0,
        0.9,
    )

def test_adversarial_refuses_a_batchnorm_critic(perceptual):
    critic = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    with pytest.raises(ValueError, match="must not use BatchNorm"):
        train_adversarial(build_generator(GEN), critic, loader(), perceptual, cfg("adversarial"))

def test_step_schedule_drops_both_learning_rates_and_survives_a_resume(tmp_path):
    settings = dict(iterations=4, checkpoint_every=1, perceptual_weight=0.0, lr=1e-3,
                    critic_lr=2e-3, lr_schedule="step", lr_milestones=[2], lr_gamma=0.1)
    rec = Recorder(tmp_path)

    def train(start=None, **overrides):
        return train_adversarial(build_generator(GEN, seed=0), tiny_critic(),
                                 loader(start_batch=start["batches"] if start else 0), None,
                                 cfg("adversarial", **(settings | overrides)), start=start,
                                 on_checkpoint=rec.on_checkpoint)

    full = train()
    lrs = [(s["optimizer_g"]["param_groups"][0]["lr"], s["optimizer_c"]["param_groups"][0]["lr"])
           for s in rec.saved]  # the rate of each checkpoint's last update (steps 1..4)
    assert lrs == [(1e-3, 2e-3), (1e-3, 2e-3), (1e-4, 2e-4), (1e-4, 2e-4)]
    # Resumed from step 1 (before the milestone), a run reaches the same weights bit for bit.
    resumed = train(start=rec.saved[0])
    for part in ("generator", "critic"):
        assert all(torch.equal(full[part][k], resumed[part][k]) for k in full[part])

def test_a_critic_of_another_width_is_refused_by_name(tmp_path):
    rec = Recorder(tmp_path)
    train_adversarial(build_generator(GEN, seed=0), tiny_critic(), loader(), None,
                      cfg("adversarial", iterations=2, checkpoint_every=1, perceptual_weight=0.0),
                      on_checkpoint=rec.on_checkpoint)
    wider = Critic(base_channels=16, pool_size=2, hidden=16)
    with pytest.raises(ValueError, match=r"base_channels: checkpoint 8, requested 16 "
                                         r"\(train_gan.critic\)"):
        train_adversarial(build_generator(GEN), wider, loader(), None,
                          cfg("adversarial", iterations=3, perceptual_weight=0.0),
                          start=rec.saved[0])
