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
from srgan_pipeline.training import loop as loop_module
from srgan_pipeline.training.state import LossReader

pytestmark = pytest.mark.usefixtures("one_thread")


def nan_on_third_batch(batches):
    for number, (lr, hr) in enumerate(batches, 1):
        yield (lr * math.nan if number == 3 else lr), hr


def test_non_finite_loss_stops_before_the_update(tmp_path, perceptual):
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


def test_losses_read_a_step_late_still_stop_before_any_checkpoint_of_bad_weights(
        tmp_path, perceptual, monkeypatch):
    # CUDA's reading, forced on CPU: the NaN of step 3 is found at step 4's take, after step 3's
    # update; the checkpoint due at step 4 is never written.
    monkeypatch.setattr(loop_module, "LossReader", lambda late: LossReader(late=True))
    rec = Recorder(tmp_path)
    with pytest.raises(NonFiniteLossError,
                       match=r"step 3: loss pretrain/pixel = nan; read one update late"):
        pretrain(build_generator(GEN, seed=0), nan_on_third_batch(loader()), perceptual,
                 cfg(iterations=5, checkpoint_every=2, log_every=5),
                 on_checkpoint=rec.on_checkpoint)
    assert [s["step"] for s in rec.saved] == [2]


def test_a_late_reader_hands_each_take_on_at_the_next_and_drains_the_last():
    reader = LossReader(late=True)
    assert reader.take({"a": torch.tensor(1.0), "b": torch.tensor(2.0)}, step=1) == []
    assert reader.take({"a": torch.tensor(3.0), "b": torch.tensor(4.0)}, step=2) == [
        {"a": 1.0, "b": 2.0}]
    assert reader.drain() == [{"a": 3.0, "b": 4.0}] and reader.drain() == []
    assert LossReader(late=False).take({"a": torch.tensor(5.0)}, step=1) == [{"a": 5.0}]
    reader.take({"a": torch.tensor(math.inf)}, step=7)
    with pytest.raises(NonFiniteLossError, match="step 7: loss a = inf; read one update late"):
        reader.drain()
