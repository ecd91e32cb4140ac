"""The loop both phases share (training/loop.py) on tiny models (8 channels, 1 block, 32 px
patches): logging windows, checkpoints, resume, time budget, memory format and precision.
The helpers here serve every test of training/."""

from __future__ import annotations

import copy
import itertools
import os
import shutil

import numpy as np
import pytest
import torch
from test_checkpoints import GEN
from test_patches import PATCH, loader

from srgan_pipeline import devices
from srgan_pipeline.checkpoints import build_generator
from srgan_pipeline.models import Critic
from srgan_pipeline.training import clock as clock_module
from srgan_pipeline.training import loop as loop_module
from srgan_pipeline.training import phase_config, pretrain, train_adversarial
from srgan_pipeline.training.distributed import World
from srgan_pipeline.training.state import LossReader

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

def test_the_time_budget_never_stops_a_run_before_its_floor(tmp_path, monkeypatch):
    def run(**floor):
        clock = itertools.count(step=13.0)  # each clock read: 13 "seconds" later
        monkeypatch.setattr(clock_module, "now", lambda: next(clock))
        return pretrain(build_generator(GEN, seed=0), loader(), None,
                        cfg(iterations=100, perceptual_weight=0.0, max_minutes=1.0,
                            checkpoint_every=50, **floor))

    assert run()["step"] < 30  # the budget alone stops earlier ...
    floored = run(min_iterations=30)
    assert floored["step"] == 30 and floored["stopped_because"] == "max_minutes"  # ... not here
    capped = run(min_iterations=500)  # a floor above iterations: the run ends at iterations
    assert capped["step"] == 100 and capped["stopped_because"] == "iterations"


@pytest.mark.parametrize("phase", ["pretrain", "adversarial"])
def test_losses_read_a_step_late_give_the_same_windows_and_weights(tmp_path, perceptual,
                                                                   monkeypatch, phase):
    """CUDA reads losses one update late (no host sync in a step): forced on CPU, the logged
    windows and the weights are those of reading at once, bit for bit."""
    runs = {}
    for late in (False, True):
        monkeypatch.setattr(loop_module, "LossReader", lambda late, forced=late: LossReader(forced))
        rec = Recorder(tmp_path)
        config = cfg(phase, iterations=5, log_every=2, checkpoint_every=3)
        kwargs = dict(on_log=rec.on_log, on_checkpoint=rec.on_checkpoint)
        if phase == "pretrain":
            state = pretrain(build_generator(GEN, seed=0), loader(), perceptual, config, **kwargs)
        else:
            state = train_adversarial(build_generator(GEN, seed=0), tiny_critic(), loader(),
                                      perceptual, config, **kwargs)
        runs[late] = state, rec
    (eager, at_once), (late, one_late) = runs[False], runs[True]
    assert [s for s, _ in one_late.logs] == [s for s, _ in at_once.logs] == [2, 4, 5]
    assert one_late.losses() == at_once.losses()
    assert [s["step"] for s in one_late.saved] == [3, 5]
    assert all(torch.equal(eager["generator"][k], late["generator"][k])
               for k in eager["generator"])


def _to_float64(batches):
    for low_res, high_res in batches:
        yield low_res.double(), high_res.double()


def _weights_error(state, reference) -> tuple[float, float]:
    """Max and mean |difference| over the generator's floating-point state (BN stats too)."""
    diffs = [(state["generator"][k].double() - reference["generator"][k].double()).abs()
             for k in reference["generator"] if reference["generator"][k].is_floating_point()]
    return (max(d.max().item() for d in diffs),
            sum(d.sum().item() for d in diffs) / sum(d.numel() for d in diffs))


@pytest.mark.skipif(shutil.which(os.environ.get("CXX", "g++")) is None,
                    reason="torch.compile on CPU (inductor) needs a C++ compiler; none found")
def test_a_compiled_step_trains_the_weights_the_eager_step_does(perceptual, monkeypatch):
    """``compile: reduce-overhead`` (on CPU: inductor without CUDA graphs) against eager.

    Compiled code fuses and reorders float32 arithmetic, so its weights differ from eager's in
    the last bits. Both are float32 evaluations of one computation: against the same run in
    float64 the compiled weights must be about as close as the eager ones are (measured at
    commit time: max 1.8e-6 vs 9.6e-7, mean 2.36e-9 vs 2.35e-9), so the bounds are 4x eager's
    max and 2x its mean. Phase 2 (compiled generator and VGG, eager critic) has no float64 run
    (the gradient penalty is float32 by design): its compiled and eager weights must differ by
    no more than 10x the mean rounding difference phase 1 shows against float64.
    Compiling takes ~35 s on 2 cores; phase 2 reuses phase 1's compiled graphs.
    """
    def run(phase, compile=None, float64=False):
        generator, vgg, batches = build_generator(GEN, seed=0), perceptual, loader()
        if float64:
            generator, vgg, batches = generator.double(), copy.deepcopy(vgg).double(), \
                _to_float64(batches)
        config = cfg(phase, iterations=3, compile=compile, log_every=100, checkpoint_every=100)
        if phase == "pretrain":
            return pretrain(generator, batches, vgg, config)
        return train_adversarial(generator, tiny_critic(), batches, vgg, config)

    modes, compile_ = [], torch.compile
    monkeypatch.setattr(torch, "compile", lambda module, mode: modes.append(mode) or compile_(
        module, mode=mode))
    reference = run("pretrain", float64=True)
    eager_max, eager_mean = _weights_error(run("pretrain"), reference)
    assert modes == []
    compiled = run("pretrain", compile="reduce-overhead")
    assert modes == ["reduce-overhead"] * 2  # the generator and the VGG loss
    assert not any(k.startswith("_orig_mod") for k in compiled["generator"])  # plain keys
    compiled_max, compiled_mean = _weights_error(compiled, reference)
    assert 0 < eager_mean and compiled_max <= 4 * eager_max and compiled_mean <= 2 * eager_mean

    _, gan_mean = _weights_error(run("adversarial", compile="reduce-overhead"),
                                 run("adversarial"))
    assert gan_mean <= 10 * eager_mean


def test_compile_auto_captures_cuda_graphs_on_one_cuda_process_only():
    one_gpu, two_gpus = World(), World(rank=0, size=2, device=torch.device("cuda"))
    assert loop_module.compile_mode("auto", torch.device("cuda"), one_gpu) == "reduce-overhead"
    assert loop_module.compile_mode("auto", torch.device("cpu"), one_gpu) is None
    assert loop_module.compile_mode("auto", torch.device("cuda"), two_gpus) is None
    assert loop_module.compile_mode("default", torch.device("cpu"), one_gpu) == "default"
    assert loop_module.compile_mode(None, torch.device("cuda"), one_gpu) is None


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
