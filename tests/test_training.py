"""Training loops on tiny models (8 channels, 1 block, 32 px patches): seconds on a CPU."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch.optim.swa_utils import update_bn

from srgan_pipeline import devices
from srgan_pipeline.checkpoints import build_generator, evaluated_weights, load_generator_state
from srgan_pipeline.models import Critic, VGGPerceptualLoss
from srgan_pipeline.patches import PatchDataset, make_loader
from srgan_pipeline.training import (
    NonFiniteLossError,
    lr_factor,
    phase_config,
    pretrain,
    train_adversarial,
)
from srgan_pipeline.training import clock as clock_module

SCALE, PATCH = 4, 32
GEN = {"scale": SCALE, "channels": 8, "num_blocks": 1}
CPU = torch.device("cpu")
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


def coded_tiles(n: int = 3, lr_size: int = 16, scale: int = SCALE):
    """LR tiles whose pixels encode (row, column, tile) in (R, G, B), and HR tiles made of
    scale x scale blocks of the LR pixel they belong to: any aligned crop and any flip or
    rotation applied to both keeps lr == hr[..., ::scale, ::scale]."""
    hr_tiles, lr_tiles = {}, {}
    for t in range(n):
        rows, cols = np.meshgrid(np.arange(lr_size), np.arange(lr_size), indexing="ij")
        lr = np.stack([rows, cols, np.full_like(rows, t)], axis=-1).astype(np.uint8)
        hr = lr.repeat(scale, axis=0).repeat(scale, axis=1)
        hr_tiles[f"img{t}_s001"] = lambda a=hr: a
        lr_tiles[f"img{t}_s001"] = lambda a=lr: a
    return hr_tiles, lr_tiles


def cfg(phase: str = "pretrain", **overrides):
    """conf/base's settings of ``phase`` shrunk to this module's tiny runs, plus ``overrides``."""
    tiny = dict(iterations=4, batch_size=2, patch_size=PATCH, lr=1e-3, log_every=1,
                checkpoint_every=2, perceptual_weight=1.0, channels_last=True, amp_bf16=False,
                lr_schedule="constant", lr_milestones=[])
    tiny |= {"ema_decay": None} if phase == "pretrain" else {"n_critic": 2}
    return phase_config(phase, **(tiny | overrides))


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models gain nothing from intra-op threads, and when another process holds a core
    the idle OpenMP threads spin: this module went from 5 s to 120 s on a busy 2-core box."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def perceptual():
    return VGGPerceptualLoss(layer="relu1_2", weights="random")


def tiny_critic(seed: int = 1) -> Critic:
    torch.manual_seed(seed)
    return Critic(base_channels=8, pool_size=2, hidden=16)  # accepts 17 px and up


def loader(seed: int = 0, start_batch: int = 0, batch_size: int = 2, num_workers: int = 0):
    dataset = PatchDataset(*coded_tiles(), patch_size=PATCH, scale=SCALE)
    return make_loader(dataset, batch_size, num_workers, seed, CPU, start_batch=start_batch)


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


# ------------------------------------------------------------------------------ data


def test_patch_dataset_crops_are_aligned_and_augmented():
    dataset = PatchDataset(*coded_tiles(), patch_size=PATCH, scale=SCALE)
    assert len(dataset) == 3
    p, orientations = PATCH // SCALE, set()
    torch.manual_seed(0)
    for k in range(40):
        lr, hr = dataset[k % 3] if k % 2 else dataset[(k % 3, k)]
        assert lr.shape == (3, p, p) and hr.shape == (3, PATCH, PATCH)
        assert lr.dtype == hr.dtype == torch.float32
        assert 0 <= lr.min() and lr.max() <= 1
        assert torch.equal(lr, hr[:, ::SCALE, ::SCALE])  # aligned after crop + flip + rot
        rows, cols = (lr[:2] * 255).round().long()
        # A contiguous p x p window of the tile, seen under one of the 8 symmetries.
        assert sorted(set(rows.flatten().tolist())) == list(range(rows.min(), rows.min() + p))
        assert sorted(set(cols.flatten().tolist())) == list(range(cols.min(), cols.min() + p))
        assert (lr[2] * 255).round().eq(k % 3).all()  # the requested tile
        orientations.add(
            (rows[0, 0] < rows[-1, -1], cols[0, 0] < cols[-1, -1], rows[0, 0] == rows[0, 1])
        )
    assert len(orientations) > 4  # flips and rotations do happen
    assert all(torch.equal(a, b) for a, b in zip(dataset[(1, 7)], dataset[(1, 7)], strict=True))

    plain = PatchDataset(*coded_tiles(), patch_size=PATCH, scale=SCALE, augment=False)
    lr, _ = plain[0]
    assert (lr[0, 1:] > lr[0, :-1]).all() and (lr[1, :, 1:] > lr[1, :, :-1]).all()


def test_patch_dataset_refuses_bad_input():
    hr, lr = coded_tiles()
    with pytest.raises(ValueError, match="img9_s001"):
        PatchDataset(hr | {"img9_s001": hr["img0_s001"]}, lr, PATCH, SCALE)
    with pytest.raises(ValueError, match="multiple of the scale"):
        PatchDataset(hr, lr, 30, SCALE)
    small_hr, small_lr = coded_tiles(n=1, lr_size=6)
    with pytest.raises(ValueError, match=r"img0_s001.*smaller than patch_size=32"):
        PatchDataset(small_hr, small_lr, PATCH, SCALE)[0]
    with pytest.raises(ValueError, match="divided by scale"):
        PatchDataset(hr, {k: (lambda: np.zeros((15, 16, 3), np.uint8)) for k in lr}, PATCH, SCALE)[
            0
        ]
    with pytest.raises(ValueError, match="uint8"):
        PatchDataset(hr, {k: (lambda: np.zeros((16, 16, 3))) for k in lr}, PATCH, SCALE)[0]


def test_cached_patch_dataset_decodes_each_tile_once_and_gives_the_same_patches():
    hr_tiles, lr_tiles = coded_tiles()
    calls = []
    counted = {k: (lambda f=f, k=k: calls.append(k) or f()) for k, f in hr_tiles.items()}
    plain = PatchDataset(hr_tiles, lr_tiles, patch_size=PATCH, scale=SCALE)
    cached = PatchDataset(counted, lr_tiles, patch_size=PATCH, scale=SCALE, cache=True)
    for k in range(12):
        for a, b in zip(plain[(k % 3, k)], cached[(k % 3, k)], strict=True):
            assert torch.equal(a, b)
    assert sorted(calls) == sorted(hr_tiles)  # 12 samples, 3 tiles, each decoded once


def test_loader_stream_depends_on_seed_and_position_only():
    first = list(itertools.islice(loader(seed=3), 4))
    resumed = next(loader(seed=3, start_batch=3))
    with_worker = list(itertools.islice(loader(seed=3, num_workers=1), 4))
    assert all(torch.equal(a, b) for a, b in zip(first[3], resumed, strict=True))
    for x, y in zip(first, with_worker, strict=True):
        assert all(torch.equal(a, b) for a, b in zip(x, y, strict=True))
    other = next(loader(seed=4))
    assert not torch.equal(first[0][1], other[1])


# -------------------------------------------------------------------------- config


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


# -------------------------------------------------------------------------- phase 1


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


# ------------------------------------------------------------------- failure modes


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


# -------------------------------------------------------------------------- phase 2


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


def test_finite_batch_source_gets_a_clear_error():
    with pytest.raises(RuntimeError, match="batch iterator ran out"):
        pretrain(build_generator(GEN), iter([next(loader())]), None, cfg(perceptual_weight=0.0))


def test_adversarial_refuses_a_batchnorm_critic(perceptual):
    critic = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    with pytest.raises(ValueError, match="must not use BatchNorm"):
        train_adversarial(build_generator(GEN), critic, loader(), perceptual, cfg("adversarial"))


def test_lr_factor_warms_up_then_follows_a_cosine_to_zero():
    cosine = cfg(iterations=100, lr_schedule="cosine", warmup_steps=10)
    assert lr_factor(cosine, 0) == pytest.approx(0.1 * 0.5 * (1 + math.cos(0)))
    assert lr_factor(cosine, 50) == pytest.approx(0.5)
    assert lr_factor(cosine, 100) == pytest.approx(0.0)
    # a wall-clock budget that ends the run first drives the decay instead
    assert lr_factor(cosine, 10, budget_used=0.5) == pytest.approx(0.5)
    assert lr_factor(cfg(iterations=100), 50) == 1.0


def test_lr_factor_steps_down_at_each_milestone_as_the_paper_does():
    paper = cfg("adversarial", iterations=200_000, lr_schedule="step", lr_milestones=[100_000],
                lr_gamma=0.1)
    assert lr_factor(paper, 0) == 1.0 and lr_factor(paper, 99_999) == 1.0
    assert lr_factor(paper, 100_000) == pytest.approx(0.1)  # update 100 001 on: 1e-5
    two = cfg(lr_schedule="step", lr_milestones=[2, 5], lr_gamma=0.5)
    assert [lr_factor(two, step) for step in range(7)] == [1, 1, 0.5, 0.5, 0.5, 0.25, 0.25]


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


def test_a_plain_state_dict_is_not_taken_for_a_checkpoint():
    plain = build_generator(GEN).state_dict()
    with pytest.raises(ValueError, match=r"is a plain state dict \(keys head.0.weight.*not a "
                                         r"generator checkpoint written by train_gan"):
        load_generator_state(build_generator(GEN), plain)


def test_each_phase_takes_only_its_own_settings(perceptual):
    with pytest.raises(ValueError, match=r"train_gan\.adversarial\.ema_decay: unknown key"):
        cfg("adversarial", ema_decay=0.9)
    with pytest.raises(ValueError, match=r"train_gan\.pretrain\.n_critic: unknown key"):
        cfg("pretrain", n_critic=2)
    with pytest.raises(TypeError, match=r"adversarial takes params\.AdversarialParams"):
        train_adversarial(build_generator(GEN), tiny_critic(), loader(), perceptual,
                          cfg(iterations=1))


def test_input_skip_adds_a_bicubic_upsampling_of_the_input():
    generator = build_generator({**GEN, "input_skip": True}, seed=0).eval()
    torch.nn.init.zeros_(generator.tail.weight)
    torch.nn.init.zeros_(generator.tail.bias)
    lr = torch.rand(1, 3, 8, 10)
    expected = torch.nn.functional.interpolate(lr, scale_factor=SCALE, mode="bicubic") * 2 - 1
    torch.testing.assert_close(generator(lr), expected)
