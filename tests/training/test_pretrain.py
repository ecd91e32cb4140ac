"""Phase 1 (training/pretrain.py): pixel + VGG loss, and the EMA of its weights."""

from __future__ import annotations

import itertools

import pytest
import torch
from test_loop import GEN, Recorder, cfg
from test_patches import SCALE, loader
from torch.optim.swa_utils import update_bn

from srgan_pipeline.checkpoints import build_generator, evaluated_weights, load_generator_state
from srgan_pipeline.training import pretrain

pytestmark = pytest.mark.usefixtures("one_thread")


def test_pretraining_steps_lower_the_loss(tmp_path):
    generator = build_generator(GEN, seed=0)
    batch = next(loader())
    rec = Recorder(tmp_path)
    state = pretrain(
        generator,
        itertools.repeat(batch),
        None,
        cfg(iterations=8, perceptual_weight=0.0),
        on_log=rec.on_log,
    )
    totals = [m["pretrain/total"] for _, m in rec.logs]
    assert totals[-1] < 0.5 * totals[0]
    assert "pretrain/perceptual" not in rec.logs[0][1]  # weight 0: VGG not even computed
    assert state["step"] == 8 and state["stopped_because"] == "iterations"

def test_same_seed_gives_the_same_losses(tmp_path, perceptual):
    runs = []
    for _ in range(2):
        rec = Recorder(tmp_path)
        pretrain(build_generator(GEN, seed=0), loader(), perceptual, cfg(), on_log=rec.on_log)
        runs.append(rec.losses())
    assert runs[0] == runs[1] and len(runs[0]) == 4
    assert set(runs[0][0]) == {"pretrain/pixel", "pretrain/perceptual", "pretrain/total"}

def test_architecture_mismatch_is_readable(tmp_path):
    state = pretrain(
        build_generator(GEN, seed=0), loader(), None, cfg(iterations=1, perceptual_weight=0.0)
    )
    other = build_generator({"scale": SCALE, "channels": 16, "num_blocks": 2})
    with pytest.raises(ValueError) as err:
        load_generator_state(other, state)
    message = str(err.value)
    assert "channels: checkpoint 8, requested 16" in message
    assert "num_blocks: checkpoint 1, requested 2" in message and "scale" not in message
    with pytest.raises(ValueError, match="channels: checkpoint 8, requested 16"):
        pretrain(other, loader(), None, cfg(perceptual_weight=0.0), start=state)

def test_ema_weights_are_saved_resumed_and_evaluated(tmp_path):
    rec = Recorder(tmp_path)
    final = pretrain(build_generator(GEN, seed=0), loader(), None,
                     cfg(iterations=4, checkpoint_every=2, ema_decay=0.5, perceptual_weight=0.0),
                     on_checkpoint=rec.on_checkpoint)
    raw, ema = final["generator"], final["generator_ema"]
    assert raw.keys() == ema.keys()
    assert not torch.equal(raw["head.0.weight"], ema["head.0.weight"])
    assert evaluated_weights(final)["generator"] is ema
    assert evaluated_weights({**final, "generator_ema": None})["generator"] is raw
    # resuming from step 2 reaches the same averaged weights and BatchNorm statistics,
    # bit for bit: the checkpoint carries the batches the statistics are recomputed from
    resumed = pretrain(build_generator(GEN, seed=0), loader(start_batch=2), None,
                       cfg(iterations=4, checkpoint_every=2, ema_decay=0.5,
                           perceptual_weight=0.0), start=rec.saved[0])
    assert len(rec.saved[0]["ema_bn_inputs"]) == 2
    for name, tensor in ema.items():
        assert torch.equal(resumed["generator_ema"][name], tensor), name

def test_ema_batchnorm_statistics_are_those_of_the_averaged_weights():
    final = pretrain(build_generator(GEN, seed=0), loader(), None,
                     cfg(iterations=4, ema_decay=0.5, perceptual_weight=0.0))
    averaged = build_generator(GEN)
    averaged.load_state_dict(final["generator_ema"])
    inputs = [lr for lr, _ in itertools.islice(loader(), 4)]  # the 4 batches trained on
    update_bn(inputs, averaged)
    for name in ("blocks.0.bn1.running_mean", "blocks.0.bn2.running_var",
                 "body_tail.1.running_mean"):
        torch.testing.assert_close(averaged.state_dict()[name], final["generator_ema"][name])
        assert not torch.allclose(final["generator"][name], final["generator_ema"][name])

def test_the_ema_update_is_torchs_without_its_host_syncs():
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    from srgan_pipeline.training.pretrain import _update_ema

    model = build_generator(GEN, seed=0)
    ours, torchs = (AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9))
                    for _ in range(2))
    for seed in range(3):  # the first update copies, the later ones average
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(seed)))
        _update_ema(ours, model)
        torchs.update_parameters(model)
        assert ours.n_averaged.device.type == "cpu" and ours.n_averaged == torchs.n_averaged
        for key, value in torchs.state_dict().items():
            assert torch.equal(ours.state_dict()[key], value), key
