"""The loop both phases share (training/loop.py) on tiny models (8 channels, 1 block, 32 px
patches): logging windows, checkpoints, resume, time budget, memory format and precision.
The helpers here serve every test of training/."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from test_checkpoints import GEN
from test_patches import PATCH, loader

from srgan_pipeline import devices
from srgan_pipeline.checkpoints import build_generator
from srgan_pipeline.models import Critic
from srgan_pipeline.training import clock as clock_module
from srgan_pipeline.training import phase_config, pretrain, train_adversarial

pytestmark = pytest.mark.usefixtures("one_thread")


def cfg(phase: str = "pretrain", **overrides):
    """conf/base's settings of ``phase`` shrunk to this module's tiny runs, plus ``overrides``."""
    tiny = dict(iterations=4, batch_size=2, patch_size=PATCH, lr=1e-3, log_every=1,
                checkpoint_every=2, perceptual_weight=1.0, channels_last=True, amp_bf16=False,
                lr_schedule="constant", lr_milestones=[])
    tiny |= {"ema_decay": None} if phase == "pretrain" else {"n_critic": 2}
    return phase_config(phase, **(tiny | overrides))

def tiny_critic(seed: int = 1) -> Critic:
    torch.manual_seed(seed)
    return Critic(base_channels=8, pool_size=2, hidden=16)  # accepts 17 px and up

class Recorder:
    """on_log / on_checkpoint that keep what they were given (checkpoints round-tripped
    through torch.save / torch.load(weights_only=True), as the Kedro node stores them)."""

    def __init__(self, tmp_path, kill_at: int | None = None):
        self.logs, self.saved, self.tmp, self.kill_at = [], [], tmp_path, kill_at

    def on_log(self, step, metrics):
        self.logs.append((step, metrics))
        if step == self.kill_at:
            raise KeyboardInterrupt(f"killed at step {step}")

    def on_checkpoint(self, state):
        path = self.tmp / f"ckpt_{len(self.saved)}.pt"
        torch.save(state, path)
        self.saved.append(torch.load(path, weights_only=True))

    def losses(self):
        return [{k: v for k, v in m.items() if not k.startswith("time/")} for _, m in self.logs]


def test_log_window_means_and_checkpoints(tmp_path, perceptual):
    per_step, windowed = Recorder(tmp_path), Recorder(tmp_path)
    pretrain(
        build_generator(GEN, seed=0),
        loader(),
        perceptual,
        cfg(iterations=5),
        on_log=per_step.on_log,
    )
    pretrain(
        build_generator(GEN, seed=0),
        loader(),
        perceptual,
        cfg(iterations=5, log_every=2, checkpoint_every=3),
        on_log=windowed.on_log,
        on_checkpoint=windowed.on_checkpoint,
    )
    assert [s for s, _ in windowed.logs] == [2, 4, 5]  # last partial window flushed at the end
    expected = (per_step.losses()[0]["pretrain/total"] + per_step.losses()[1]["pretrain/total"]) / 2
    assert windowed.losses()[0]["pretrain/total"] == pytest.approx(expected, rel=1e-6)
    m = windowed.logs[0][1]
    assert m["time/iters_per_sec"] > 0 and 0 <= m["time/data_wait_share"] <= 1
    assert [s["step"] for s in windowed.saved] == [3, 5]  # every 3 steps, and at the end

def test_checkpoint_is_plain_data(tmp_path, perceptual):
    rec = Recorder(tmp_path)
    pretrain(
        build_generator(GEN, seed=0),
        loader(),
        perceptual,
        cfg(iterations=2),
        on_checkpoint=rec.on_checkpoint,
    )
    state = rec.saved[-1]  # round-tripped with weights_only=True
    assert state["phase"] == "pretrain" and state["step"] == 2 and state["batches"] == 2
    assert state["critic"] is None and state["optimizer_c"] is None
    assert state["config"]["betas"] == (0.9, 0.999)
    assert state["generator_config"] == {**GEN, "input_skip": False}
    assert state["perceptual_weights"] == "random"
    assert isinstance(state["rng"]["torch"], torch.Tensor)
    assert state["stopped_because"] == "iterations"

@pytest.mark.parametrize("phase", ["pretrain", "adversarial"])
def test_killed_run_resumes_to_the_same_weights(tmp_path, perceptual, phase):
    def run(start=None, kill_at=None):
        rec = Recorder(tmp_path, kill_at)
        generator = build_generator(GEN, seed=5 if start else 0)  # resume overwrites weights
        batches = loader(start_batch=start["batches"] if start else 0)
        kwargs = dict(start=start, on_log=rec.on_log, on_checkpoint=rec.on_checkpoint)
        config = cfg(phase, iterations=6, checkpoint_every=2)
        try:
            if phase == "pretrain":
                state = pretrain(generator, batches, perceptual, config, **kwargs)
            else:
                critic = tiny_critic(seed=6 if start else 1)
                state = train_adversarial(generator, critic, batches, perceptual, config, **kwargs)
        except KeyboardInterrupt:
            state = None
        return state, rec

    full, _ = run()
    killed, rec = run(kill_at=5)
    assert killed is None and rec.saved[-1]["step"] == 4
    resumed, rec2 = run(start=rec.saved[-1])
    assert resumed["step"] == full["step"] == 6 and [s for s, _ in rec2.logs] == [5, 6]
    assert resumed["batches"] == full["batches"]
    for part in ("generator", "critic"):
        if full[part] is not None:  # bit-exact, not just close
            assert all(torch.equal(full[part][k], resumed[part][k]) for k in full[part])
    assert torch.equal(
        full["optimizer_g"]["state"][0]["exp_avg"], resumed["optimizer_g"]["state"][0]["exp_avg"]
    )

def test_max_minutes_stops_cleanly(tmp_path, monkeypatch):
    clock = itertools.count(step=13.0)  # each clock read: 13 "seconds" later
    monkeypatch.setattr(clock_module, "now", lambda: next(clock))
    rec = Recorder(tmp_path)
    state = pretrain(
        build_generator(GEN, seed=0),
        loader(),
        None,
        cfg(iterations=100, perceptual_weight=0.0, max_minutes=1.0, checkpoint_every=50),
        on_checkpoint=rec.on_checkpoint,
    )
    assert state["stopped_because"] == "max_minutes"
    assert 1 <= state["step"] < 100
    assert rec.saved[-1]["step"] == state["step"]
    assert rec.saved[-1]["stopped_because"] == "max_minutes"

def test_resume_may_switch_memory_format_and_precision(tmp_path):
    first = pretrain(
        build_generator(GEN, seed=0),
        loader(),
        None,
        cfg(iterations=2, perceptual_weight=0.0, channels_last=False),
    )
    generator = build_generator(GEN)
    state = pretrain(
        generator,
        loader(start_batch=2),
        None,
        cfg(perceptual_weight=0.0, amp_bf16=True),
        start=first,
    )
    assert state["step"] == 4
    assert generator.tail.weight.is_contiguous(memory_format=torch.channels_last)
    moments = state["optimizer_g"]["state"][0]  # param 0: the 9x9 head conv weight
    assert moments["exp_avg"].is_contiguous(memory_format=torch.channels_last)

def test_bf16_autocast_trains_on_cpu_close_to_float32():
    runs = {}
    for amp in (False, True):
        recorder = Recorder(None)
        pretrain(build_generator(GEN, seed=0), loader(), None,
                 cfg(perceptual_weight=0.0, amp_bf16=amp), on_log=recorder.on_log)
        runs[amp] = [m["pretrain/pixel"] for m in recorder.losses()]
    assert runs[True] != runs[False]  # autocast did run in bf16 ...
    np.testing.assert_allclose(runs[True], runs[False], rtol=0.05)  # ... and trains alike

@pytest.mark.parametrize("bf16_units", [False, True])
def test_amp_bf16_auto_trains_as_the_setting_the_hardware_calls_for(monkeypatch, bf16_units):
    def losses(amp):
        recorder = Recorder(None)
        pretrain(build_generator(GEN, seed=0), loader(), None,
                 cfg(iterations=2, perceptual_weight=0.0, amp_bf16=amp), on_log=recorder.on_log)
        return [m["pretrain/pixel"] for m in recorder.losses()]

    monkeypatch.setattr(devices, "bf16_is_fast", lambda device: bf16_units)
    assert losses("auto") == losses(bf16_units)  # bit for bit: the same computation
