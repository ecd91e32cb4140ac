"""Checkpoint snapshots and finiteness checks (training/state.py): a bad step never reaches
the weights or a checkpoint."""

from __future__ import annotations

import math

import pytest
import torch
from test_loop import GEN, Recorder, cfg
from test_patches import loader

from srgan_pipeline.checkpoints import build_generator
from srgan_pipeline.training import NonFiniteLossError, pretrain

pytestmark = pytest.mark.usefixtures("one_thread")


def test_non_finite_loss_stops_before_the_update(tmp_path, perceptual):
    def nan_on_third_batch(batches):
        for number, (lr, hr) in enumerate(batches, 1):
            yield (lr * math.nan if number == 3 else lr), hr

    generator, rec = build_generator(GEN, seed=0), Recorder(tmp_path)
    with pytest.raises(NonFiniteLossError, match=r"step 3: loss pretrain/pixel = nan"):
        pretrain(
            generator,
            nan_on_third_batch(loader()),
            perceptual,
            cfg(iterations=5, checkpoint_every=1),
            on_checkpoint=rec.on_checkpoint,
        )
    last = rec.saved[-1]
    assert last["step"] == 2
    assert all(torch.isfinite(v).all() for v in last["generator"].values())
    # The failing step did not update the weights (its forward did move BatchNorm's stats).
    assert all(torch.equal(p, last["generator"][k]) for k, p in generator.named_parameters())

def test_non_finite_weights_are_never_checkpointed(tmp_path):
    generator, rec = build_generator(GEN, seed=0), Recorder(tmp_path)

    def corrupt(step, metrics):  # as if step 2's update had overflowed
        if step == 2:
            with torch.no_grad():
                generator.tail.weight.fill_(math.inf)

    with pytest.raises(NonFiniteLossError, match="step 2: generator weights are not finite"):
        pretrain(
            generator,
            loader(),
            None,
            cfg(perceptual_weight=0.0),
            on_log=corrupt,
            on_checkpoint=rec.on_checkpoint,
        )
    assert rec.saved == []
