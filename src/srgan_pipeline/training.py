"""SRGAN training in plain PyTorch: phase 1 (pretrain) and phase 2 (WGAN-GP).

No Kedro and no MLflow in here: the Kedro node builds the models and the data, and passes
two callbacks, `on_log(step, metrics)` (one batched MLflow call per window) and
`on_checkpoint(state)` (saves the state dict). A state dict holds only tensors, numbers,
strings, lists and dicts, so `torch.load(path, weights_only=True)` reads it back and
`start=state` resumes from it.

Value ranges follow models/generator.py: LR and HR batches come out of the data in [0, 1];
the generator returns [-1, 1]; `hr_to_unit` / `unit_to_hr` are the only conversions.

Reproducibility: the patch stream is a function of (seed, sample number) (patches.py).
Together with the saved model, optimiser and torch RNG states, a resumed run on CPU ends
with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn, update_bn
from tqdm.auto import tqdm

from srgan_pipeline.checkpoints import (
    describe_generator,
    evaluated_weights,
    load_critic_state,
    load_generator_state,
)
from srgan_pipeline.devices import cpu_has_fast_bf16, pick_device  # noqa: F401 (re-export)
from srgan_pipeline.losses import (
    critic_wasserstein_loss,
    generator_adversarial_loss,
    gradient_penalty,
    pixel_loss,
)
from srgan_pipeline.models import Generator, assert_no_batchnorm, hr_to_unit, unit_to_hr
from srgan_pipeline.params import TrainingPhaseParams, validate_params

logger = logging.getLogger(__name__)

# The loops read the clock through this name so tests can fake the passing of time.
_now = time.perf_counter


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one training phase (the pretrain and GAN phases get one each)."""

    iterations: int = 100_000  # generator steps
    batch_size: int = 16
    patch_size: int = 96  # HR side
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    critic_lr: float = 1e-4
    critic_betas: tuple[float, float] = (0.0, 0.9)  # WGAN-GP (Gulrajani et al. 2017, Alg. 1)
    n_critic: int = 5  # critic steps per generator step
    gp_weight: float = 10.0
    # 1.0: the VGG loss is already rescaled by 1/12.75 (paper Sec. 3.2) to the MSE's scale.
    perceptual_weight: float = 1.0
    adversarial_weight: float = 1e-3  # paper Eq. 3
    pixel_loss: str = "mse"
    log_every: int = 50
    checkpoint_every: int = 500
    seed: int = 0
    channels_last: bool = True
    amp_bf16: bool = False  # bf16 autocast on CUDA and CPU; ignored with a warning elsewhere
    max_minutes: float | None = None  # wall-clock budget of one invocation
    # Phase 1 only: "cosine" decays the lr to 0 over the run (iterations, or max_minutes when
    # that ends the run first), after `warmup_steps` of linear warm-up.
    lr_schedule: str = "constant"
    warmup_steps: int = 0
    ema_decay: float | None = None  # phase 1 only: evaluate an EMA of the weights (e.g. 0.999)

    def __post_init__(self):
        for name, value in _checked(asdict(self), "TrainConfig").items():
            object.__setattr__(self, name, value)  # e.g. YAML lists -> tuples, ints -> floats

    @classmethod
    def from_params(cls, d: Mapping[str, Any], param_prefix: str) -> TrainConfig:
        """Build from a parameters dict; errors name `<param_prefix>.<field>`."""
        defaults = {f.name: f.default for f in fields(cls)}
        if isinstance(d, Mapping):
            d = {**defaults, **d}
        return cls(**_checked(d, param_prefix))


def _checked(values: Any, prefix: str) -> dict[str, Any]:
    """Validated, normalised values by the rules of the phase parameters (params.py)."""
    return validate_params(prefix, values, schema=TrainingPhaseParams).model_dump()


# ---------------------------------------------------------------------- train state


class NonFiniteLossError(RuntimeError):
    """A loss (or the weights) became NaN/inf; raised before the optimiser step, so the
    last checkpoint written is still good."""


def _finite_values(losses: dict[str, torch.Tensor], step: int) -> dict[str, float]:
    """Losses as floats (one device sync for all), or NonFiniteLossError naming the first bad."""
    floats = torch.stack([v.detach().float() for v in losses.values()]).tolist()
    values = dict(zip(losses, floats, strict=True))
    for name, value in values.items():
        if not math.isfinite(value):
            raise NonFiniteLossError(
                f"step {step}: loss {name} = {value}; stopped before the optimiser step, "
                "the last checkpoint is unaffected (lower the learning rate or check the data)"
            )
    return values


def _check_finite_weights(models: dict[str, nn.Module | None], step: int) -> None:
    """Never write a checkpoint with non-finite weights (e.g. one overflowing update)."""
    for name, model in models.items():
        if model is not None and not all(torch.isfinite(p).all() for p in model.parameters()):
            raise NonFiniteLossError(f"step {step}: {name} weights are not finite; not saved")


def _make_state(phase, cfg, counters, generator, opt_g, perceptual, stopped_because,
                critic=None, opt_c=None) -> dict[str, Any]:  # fmt: skip
    """The checkpoint/return dict: only weights_only-loadable types, and a snapshot (CPU
    copies): state_dict() returns the live tensors, which the next steps would overwrite
    in a state that a caller keeps in memory."""
    state = {
        "phase": phase,
        **counters,  # step, batches (consumed this phase: make_loader(start_batch=...)), elapsed_s
        "generator": generator.state_dict(),
        "critic": critic.state_dict() if critic is not None else None,
        "optimizer_g": opt_g.state_dict(),
        "optimizer_c": opt_c.state_dict() if opt_c is not None else None,
        "config": asdict(cfg),
        "generator_config": describe_generator(generator),
        "perceptual_weights": getattr(perceptual, "weights_source", None),
        # Only torch's RNG drives training (crops are seeded by the sampler, the gradient
        # penalty draws from torch); numpy and random are seeded but never used here.
        "rng": {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        },
        "stopped_because": stopped_because,
    }
    return _to_cpu_copy(state)


def _to_cpu_copy(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):  # state dicts are OrderedDicts with module versions: keep both
        out = type(obj)((k, _to_cpu_copy(v)) for k, v in obj.items())
        if hasattr(obj, "_metadata"):
            out._metadata = obj._metadata
        return out
    if isinstance(obj, list | tuple):
        return type(obj)(_to_cpu_copy(v) for v in obj)
    return obj


def _begin(phase: str, cfg: TrainConfig, start: Mapping[str, Any] | None) -> bool:
    """Seed a fresh run, or restore RNG for a resumed one; True when resuming `phase`."""
    if start is not None and start["phase"] == phase:
        torch.set_rng_state(start["rng"]["torch"].cpu())
        if start["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in start["rng"]["cuda"]])
        # Run-control fields may change on resume (e.g. more iterations); others get a note.
        run_control = {"iterations", "max_minutes", "log_every", "checkpoint_every"}
        now = asdict(cfg)
        changed = {
            k: (v, now[k])
            for k, v in start["config"].items()
            if k in now and k not in run_control and _same(v) != _same(now[k])
        }
        if changed:
            logger.warning("Resuming %s with changed config (old, new): %s", phase, changed)
        return True
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)  # also seeds every CUDA device
    return False


def _same(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def _restore_optimizer(opt: torch.optim.Optimizer, sd: Mapping[str, Any], lr, betas) -> None:
    opt.load_state_dict(sd)
    for group in opt.param_groups:  # the config of this run wins over the checkpoint's
        group["lr"], group["betas"] = lr, betas
    # Moments in their parameter's memory layout, in case channels_last changed since the
    # checkpoint: fused CUDA Adam needs params, grads and moments with identical strides.
    for p, st in opt.state.items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor) and v.shape == p.shape:
                st[k] = torch.empty_like(p).copy_(v)


def _prepare(cfg: TrainConfig, device: torch.device, *modules: nn.Module | None):
    """Move helper modules to the generator's device and memory format; autocast context."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed patch shapes: pick the fastest convs once
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    for m in modules:
        if m is not None:
            # channels_last (NHWC) lets oneDNN/cuDNN run the convs without layout reorders.
            m.to(device=device, memory_format=fmt)
    if cfg.amp_bf16 and device.type not in ("cuda", "cpu"):
        logger.warning("amp_bf16 is used on CUDA and CPU only; training in float32 on %s", device)
    elif cfg.amp_bf16:
        # On CPU this pays off where oneDNN has bf16 matrix units (AMX, AVX512-BF16): measured
        # 3.4x per step on this project's Xeon (benchmarks/train_step.py). Without them it
        # may well be slower than fp32: measure before turning it on.
        if device.type == "cpu" and not cpu_has_fast_bf16():
            logger.warning("amp_bf16 on a CPU without AMX/AVX512-BF16: bf16 may be slower than "
                           "float32 here")
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


def _adam(params, lr, betas, device) -> torch.optim.Adam:
    # fused: one kernel for all parameters on CUDA; elsewhere the default (foreach) path.
    return torch.optim.Adam(
        params, lr=lr, betas=betas, fused=True if device.type == "cuda" else None
    )


# Progress-bar names of the logged losses (the part after the "/").
_SHORT = {
    "pixel": "pix",
    "perceptual": "vgg",
    "total": "total",
    "adversarial": "adv",
    "generator_total": "G",
    "wasserstein_distance": "W",
    "gradient_penalty": "gp",
    "loss": "C",
}


class _Meter:
    """Per-window loss sums, data-wait time, tqdm bar, on_log and the INFO log line."""

    def __init__(self, phase, cfg, step, elapsed, on_log):
        self.phase, self.cfg, self.on_log = phase, cfg, on_log
        self.t0 = _now() - elapsed  # elapsed: time spent before a resume (for time/elapsed_s)
        self.run_t0 = _now()  # max_minutes counts this invocation only
        self.sums, self.counts, self.last = {}, {}, {}
        self.window_t0, self.wait, self.window_steps = _now(), 0.0, 0
        self.bar = tqdm(
            total=cfg.iterations, initial=step, desc=phase, disable=None, dynamic_ncols=True
        )

    def batch(self, batches, device, channels_last):
        t = _now()
        try:
            lr, hr = next(batches)
        except StopIteration:
            raise RuntimeError(
                "the batch iterator ran out; pass an endless one, e.g. make_loader(...)"
            ) from None
        self.wait += _now() - t
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        return (
            lr.to(device, non_blocking=True, memory_format=fmt),
            hr.to(device, non_blocking=True, memory_format=fmt),
        )

    def add(self, values: dict[str, float]) -> None:
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
            self.counts[k] = self.counts.get(k, 0) + 1
        self.last.update(values)

    def step_done(self, step: int) -> None:
        self.window_steps += 1
        rate = self.window_steps / max(_now() - self.window_t0, 1e-9)
        short = {_SHORT[k.split("/", 1)[1]]: f"{v:.3g}" for k, v in self.last.items()}
        self.bar.set_postfix(short | {"it/s": f"{rate:.3g}"}, refresh=False)
        self.bar.update(1)
        if step % self.cfg.log_every == 0:
            self.flush(step)

    def flush(self, step: int) -> None:
        if not self.window_steps:
            return
        now = _now()
        window = max(now - self.window_t0, 1e-9)
        metrics = {k: self.sums[k] / self.counts[k] for k in self.sums}
        metrics["time/iters_per_sec"] = self.window_steps / window
        metrics["time/data_wait_share"] = self.wait / window
        metrics["time/elapsed_s"] = now - self.t0
        logger.info(
            "%s step %d/%d: %s",
            self.phase,
            step,
            self.cfg.iterations,
            ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()),
        )
        if self.on_log is not None:
            self.on_log(step, metrics)
        self.sums, self.counts = {}, {}
        self.window_t0, self.wait, self.window_steps = now, 0.0, 0

    def budget_used(self) -> float:
        """Fraction of max_minutes spent by this invocation (0 without a budget)."""
        limit = self.cfg.max_minutes
        return 0.0 if limit is None else (_now() - self.run_t0) / (limit * 60)

    def out_of_time(self) -> bool:
        limit = self.cfg.max_minutes
        return limit is not None and _now() - self.run_t0 > limit * 60

    def elapsed(self) -> float:
        return _now() - self.t0


def _use_vgg(cfg: TrainConfig, perceptual: nn.Module | None) -> bool:
    """Weight 0 skips the VGG forward/backward entirely (it costs more than the generator)."""
    if cfg.perceptual_weight > 0 and perceptual is None:
        raise ValueError(
            f"perceptual_weight is {cfg.perceptual_weight} but no perceptual loss module was passed"
        )
    return cfg.perceptual_weight > 0


def _device_of(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


# ------------------------------------------------------------------- phase 1: pretrain


def pretrain(
    generator: Generator,
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
    perceptual: nn.Module | None,
    cfg: TrainConfig,
    *,
    start: Mapping[str, Any] | None = None,
    on_log: Callable[[int, dict[str, float]], None] | None = None,
    on_checkpoint: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Phase 1 (SRResNet): pixel loss + cfg.perceptual_weight x VGG loss, Adam.

    Trains `generator` in place on its current device; `batches` yields (lr, hr) in [0, 1].
    `start`: a "pretrain" state to resume. Returns the final state (as checkpointed).
    """
    device = _device_of(generator)
    use_vgg = _use_vgg(cfg, perceptual)
    autocast = _prepare(cfg, device, generator, perceptual if use_vgg else None)
    generator.train()
    opt = _adam(generator.parameters(), cfg.lr, cfg.betas, device)
    step = batches_seen = 0
    elapsed = 0.0
    if start is not None and start["phase"] != "pretrain":
        raise ValueError(f"pretrain cannot resume a {start['phase']!r} state")
    ema = _ema_of(generator, cfg)
    if _begin("pretrain", cfg, start):
        load_generator_state(generator, start)
        _restore_optimizer(opt, start["optimizer_g"], cfg.lr, cfg.betas)
        step, batches_seen, elapsed = start["step"], start["batches"], start["elapsed_s"]
        if ema is not None and start.get("generator_ema") is not None:
            ema.module.load_state_dict(start["generator_ema"])
            ema.n_averaged.fill_(step)

    # The last LR batches, to give the EMA copy BatchNorm statistics of its own weights; saved
    # with each checkpoint, so a resumed run recomputes them from the same batches.
    recent_inputs: collections.deque[torch.Tensor] = collections.deque(
        [x.to(device) for x in (start or {}).get("ema_bn_inputs") or []]
        if start is not None and start["phase"] == "pretrain" else [],
        maxlen=_BN_BATCHES)

    def state(stopped_because):
        counters = {"step": step, "batches": batches_seen, "elapsed_s": meter.elapsed()}
        snapshot = _make_state("pretrain", cfg, counters, generator, opt, perceptual,
                               stopped_because)
        snapshot["generator_ema"] = snapshot["ema_bn_inputs"] = None
        if ema is not None:
            if recent_inputs:  # else: resumed from a state without them, loaded stats stand
                update_bn(recent_inputs, ema.module)
            snapshot["generator_ema"] = _to_cpu_copy(ema.module.state_dict())
            snapshot["ema_bn_inputs"] = _to_cpu_copy(list(recent_inputs))
        return snapshot

    meter = _Meter("pretrain", cfg, step, elapsed, on_log)
    saved_at, stopped_because = step, "iterations"
    while step < cfg.iterations:
        lr, hr = meter.batch(batches, device, cfg.channels_last)
        batches_seen += 1
        with autocast():
            sr = hr_to_unit(generator(lr))
            # Pixel loss on [0, 1] intensities (not the generator's [-1, 1]), so the logged
            # MSE converts straight to the PSNR SR papers publish: -10 log10(MSE) on [0, 1]
            # (= 8-bit [0, 255] images). The paper's own MSE was on [-1, 1], 4x this value.
            losses = {"pretrain/pixel": pixel_loss(sr.float(), hr, cfg.pixel_loss)}
            total = losses["pretrain/pixel"]
            if use_vgg:
                losses["pretrain/perceptual"] = perceptual(sr, hr)
                total = total + cfg.perceptual_weight * losses["pretrain/perceptual"]
        losses["pretrain/total"] = total
        values = _finite_values(losses, step + 1)  # before the update: weights stay good
        opt.zero_grad(set_to_none=True)
        total.backward()
        for group in opt.param_groups:
            group["lr"] = cfg.lr * lr_factor(cfg, step, meter.budget_used())
        opt.step()
        if ema is not None:
            ema.update_parameters(generator)
            recent_inputs.append(lr)
        step += 1
        meter.add(values)
        meter.step_done(step)
        if step < cfg.iterations and meter.out_of_time():
            stopped_because = "max_minutes"
            break
        # The last step's checkpoint is the final state, written by _finish.
        if step % cfg.checkpoint_every == 0 and step < cfg.iterations and on_checkpoint:
            _check_finite_weights({"generator": generator}, step)
            on_checkpoint(state(None))
            saved_at = step
    return _finish(
        meter, step, saved_at, state(stopped_because), on_checkpoint, {"generator": generator}
    )


def lr_factor(cfg: TrainConfig, step: int, budget_used: float = 0.0) -> float:
    """Learning-rate multiplier at `step`: linear warm-up, then constant or cosine to 0.

    The cosine follows whichever ends the run first, the iteration count or the wall-clock
    budget (`budget_used` = fraction of max_minutes spent), so a time-boxed run still anneals.
    """
    warm = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0
    if cfg.lr_schedule == "constant":
        return warm
    progress = min(1.0, max(step / cfg.iterations, budget_used))
    return warm * 0.5 * (1.0 + math.cos(math.pi * progress))


_BN_BATCHES = 20  # batches that set the EMA copy's BatchNorm statistics at each snapshot


def _ema_of(generator: Generator, cfg: TrainConfig) -> AveragedModel | None:
    """An exponential moving average of the generator's weights (torch.optim.swa_utils).

    Only parameters are averaged. Averaging BatchNorm's running statistics as well
    (use_buffers=True) pairs averaged weights with statistics of other weights: after 560
    steps with EMA 0.99 that copy scored 19.79 dB on 8 Urban100 images, the raw weights
    22.53. Instead each snapshot recomputes them for the averaged weights from the last
    `_BN_BATCHES` training inputs (swa_utils.update_bn, as SWA does): 22.64 dB.
    """
    if cfg.ema_decay is None:
        return None
    return AveragedModel(generator, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay))


def _finish(meter, step, saved_at, final, on_checkpoint, models) -> dict[str, Any]:
    """Log the last partial window, write the final checkpoint once, close the bar."""
    meter.flush(step)
    meter.bar.close()
    if step != saved_at and on_checkpoint is not None:
        _check_finite_weights(models, step)
        on_checkpoint(final)
    logger.info("%s stopped at step %d (%s)", final["phase"], step, final["stopped_because"])
    return final


# ---------------------------------------------------------------- phase 2: WGAN-GP


def train_adversarial(
    generator: Generator,
    critic: nn.Module,
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
    perceptual: nn.Module | None,
    cfg: TrainConfig,
    *,
    start: Mapping[str, Any] | None = None,
    on_log: Callable[[int, dict[str, float]], None] | None = None,
    on_checkpoint: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Phase 2: per generator step, cfg.n_critic WGAN-GP critic steps on fresh batches,
    then one generator step on a fresh batch with
    pixel + perceptual_weight x VGG + adversarial_weight x (-critic(fake).mean()).

    `start`: a "pretrain" state (its generator weights are loaded, training starts at step
    0) or an "adversarial" state to resume. Returns the final state (as checkpointed).
    """
    assert_no_batchnorm(critic)  # per-sample gradient penalty: see models/critic.py
    if cfg.lr_schedule != "constant" or cfg.warmup_steps or cfg.ema_decay is not None:
        raise ValueError("lr_schedule, warmup_steps and ema_decay apply to phase 1 only "
                         "(train_gan.pretrain); leave them unset for train_gan.adversarial")
    device = _device_of(generator)
    use_vgg = _use_vgg(cfg, perceptual)
    autocast = _prepare(cfg, device, generator, critic, perceptual if use_vgg else None)
    generator.train()
    critic.train()
    opt_g = _adam(generator.parameters(), cfg.lr, cfg.betas, device)
    opt_c = _adam(critic.parameters(), cfg.critic_lr, cfg.critic_betas, device)
    step = batches_seen = 0
    elapsed = 0.0
    if start is not None and start["phase"] not in ("pretrain", "adversarial"):
        raise ValueError(f"train_adversarial cannot start from a {start['phase']!r} state")
    if _begin("adversarial", cfg, start):
        load_generator_state(generator, start)
        load_critic_state(critic, start)
        _restore_optimizer(opt_g, start["optimizer_g"], cfg.lr, cfg.betas)
        _restore_optimizer(opt_c, start["optimizer_c"], cfg.critic_lr, cfg.critic_betas)
        step, batches_seen, elapsed = start["step"], start["batches"], start["elapsed_s"]
    elif start is not None:  # a pretrained generator to start the GAN phase from
        load_generator_state(generator, evaluated_weights(start))

    def state(stopped_because):
        counters = {"step": step, "batches": batches_seen, "elapsed_s": meter.elapsed()}
        return {**_make_state("adversarial", cfg, counters, generator, opt_g, perceptual,
                              stopped_because, critic, opt_c),
                "critic_config": dict(getattr(critic, "config", {}))}  # fmt: skip

    meter = _Meter("adversarial", cfg, step, elapsed, on_log)
    saved_at, stopped_because = step, "iterations"
    while step < cfg.iterations:
        # Critic: maximise W = E[critic(real)] - E[critic(fake)] under the gradient penalty.
        for _ in range(cfg.n_critic):
            lr, hr = meter.batch(batches, device, cfg.channels_last)
            batches_seen += 1
            real = unit_to_hr(hr)
            # The generator stays in train mode (BatchNorm on batch statistics, as in its own
            # step), so these forwards also update its running statistics.
            with torch.no_grad(), autocast():
                fake = generator(lr)
            with autocast():
                # One forward over real and fake together: the critic scores each sample on
                # its own (no BatchNorm), so this equals two forwards, at one launch's cost.
                real_scores, fake_scores = critic(torch.cat([real, fake])).float().chunk(2)
                w_loss = critic_wasserstein_loss(real_scores, fake_scores)
            gp = gradient_penalty(critic, real, fake, cfg.gp_weight)  # fp32 inside
            c_loss = w_loss + gp
            values = _finite_values(
                {
                    "critic/wasserstein_distance": -w_loss,
                    "critic/gradient_penalty": gp,
                    "critic/loss": c_loss,
                },
                step + 1,
            )
            opt_c.zero_grad(set_to_none=True)
            c_loss.backward()
            opt_c.step()
            meter.add(values)

        # Generator: content losses plus fooling the critic.
        lr, hr = meter.batch(batches, device, cfg.channels_last)
        batches_seen += 1
        critic.requires_grad_(False)  # gradients flow through the critic, not into it
        try:
            with autocast():
                sr = generator(lr)
                sr_unit = hr_to_unit(sr)
                losses = {"gan/pixel": pixel_loss(sr_unit.float(), hr, cfg.pixel_loss)}  # [0, 1]
                total = losses["gan/pixel"]
                if use_vgg:
                    losses["gan/perceptual"] = perceptual(sr_unit, hr)
                    total = total + cfg.perceptual_weight * losses["gan/perceptual"]
                losses["gan/adversarial"] = generator_adversarial_loss(critic(sr).float())
                total = total + cfg.adversarial_weight * losses["gan/adversarial"]
        finally:
            critic.requires_grad_(True)
        losses["gan/generator_total"] = total
        values = _finite_values(losses, step + 1)
        opt_g.zero_grad(set_to_none=True)
        total.backward()
        opt_g.step()
        step += 1
        meter.add(values)
        meter.step_done(step)
        if step < cfg.iterations and meter.out_of_time():
            stopped_because = "max_minutes"
            break
        # The last step's checkpoint is the final state, written by _finish.
        if step % cfg.checkpoint_every == 0 and step < cfg.iterations and on_checkpoint:
            _check_finite_weights({"generator": generator, "critic": critic}, step)
            on_checkpoint(state(None))
            saved_at = step
    return _finish(
        meter,
        step,
        saved_at,
        state(stopped_because),
        on_checkpoint,
        {"generator": generator, "critic": critic},
    )
