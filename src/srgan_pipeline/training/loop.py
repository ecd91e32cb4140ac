"""The loop both training phases share; a phase supplies only its per-step maths.

``run(phase, batches, ...)`` resumes or seeds, sets each step's learning rate, calls
``phase.train_step``, reports windows of steps, writes checkpoints, and stops at
``iterations``, when ``max_minutes`` is spent, or at SIGTERM/SIGINT (stop.py: checkpoint at
the next step boundary, then :class:`stop.Interrupted`). A :class:`Phase` owns its models,
optimisers and losses (pretrain.py, adversarial.py); this is BasicSR's
``optimize_parameters`` split without its registries.

Data-parallel (``world``, distributed.py): every rank runs this loop on its own shard of the
batches; the phase's trained modules are wrapped in DDP, the ranks agree on the time budget
and average their metrics, and only rank 0 reports, checkpoints and returns the state.
"""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import nn

from srgan_pipeline.devices import cpu_has_fast_bf16, use_bf16_autocast
from srgan_pipeline.losses import pixel_loss
from srgan_pipeline.models import Generator
from srgan_pipeline.params import PhaseParams
from srgan_pipeline.training import stop
from srgan_pipeline.training.clock import TimeBudget
from srgan_pipeline.training.distributed import SINGLE, World
from srgan_pipeline.training.feed import Batch, BatchFeed
from srgan_pipeline.training.meter import Meter, OnLog
from srgan_pipeline.training.schedule import lr_factor
from srgan_pipeline.training.state import (
    LossReader,
    begin,
    check_finite_weights,
    restore_optimizer,
    snapshot,
)

logger = logging.getLogger(__name__)

OnCheckpoint = Callable[[dict[str, Any]], None]


class Phase:
    """One training phase as :func:`run` drives it.

    A subclass sets ``name`` and ``schema`` (the type of its settings), creates its optimisers in
    ``optimizers`` (checkpoint key -> (optimizer, base learning rate, betas)), and implements
    ``start_from`` (load weights from a start state), ``train_step`` (one generator update,
    returning the loss values to log) and, if it keeps more, ``extra_state``. Training forward
    passes go through ``train_generator`` (the generator, or its DDP wrapper: ``distribute``);
    loading, averaging and saving use ``generator`` itself.
    """

    name: str
    schema: type[PhaseParams]

    def __init__(self, cfg: PhaseParams, generator: Generator, perceptual: nn.Module | None,
                 *modules: nn.Module):
        if not isinstance(cfg, self.schema):
            raise TypeError(f"{self.name} takes params.{self.schema.__name__} (e.g. "
                            f"training.phase_config({self.name!r}, ...)), got "
                            f"{type(cfg).__name__}")
        if cfg.perceptual_weight > 0 and perceptual is None:
            raise ValueError(f"perceptual_weight is {cfg.perceptual_weight} but no perceptual "
                             "loss module was passed")
        self.cfg, self.generator, self.perceptual = cfg, generator, perceptual
        # Weight 0 skips the VGG forward/backward entirely (it costs more than the generator).
        self.vgg = perceptual if cfg.perceptual_weight > 0 else None
        self.device = next(generator.parameters()).device
        self.autocast, dtype = prepare(cfg, self.device, generator, *modules, self.vgg)
        if self.vgg is not None and dtype is not None:
            # Frozen weights are recast by autocast at every call (it caches only casts of
            # weights that require grad): store them in the training dtype once instead. The
            # same rounding, so the same losses bit for bit (tests/training/test_loop.py).
            self.vgg = self.vgg.in_dtype(dtype)
        # Loss values read to the host: at once on CPU, one update late on CUDA (LossReader).
        self.losses = LossReader(late=self.device.type == "cuda")
        self.models: dict[str, nn.Module] = {"generator": generator}
        self.optimizers: dict[str, tuple[torch.optim.Optimizer, float, Any]] = {}
        self.train_generator: nn.Module = generator
        generator.train()

    def distribute(self, world: World) -> None:
        """Wrap the trained modules for ``world`` (after their weights are loaded), and
        compile them and the VGG loss where ``cfg.compile`` asks."""
        self.compile_mode = compile_mode(self.cfg.compile, self.device, world)
        self.train_generator = self.compiled(world.wrap(self.generator))
        if self.vgg is not None:
            self.vgg = self.compiled(self.vgg)

    def compiled(self, module: nn.Module) -> nn.Module:
        """``module`` through torch.compile in ``compile_mode`` (None: as it is).

        The compiled module shares its parameters with ``module``: loading, averaging and
        saving keep using the plain one, so checkpoints have no ``_orig_mod.`` keys."""
        if self.compile_mode is None:
            return module
        return torch.compile(module, mode=self.compile_mode)

    def step_begins(self) -> None:
        """Before each update: a new CUDA graph iteration where the step is captured."""
        if self.compile_mode == "reduce-overhead":
            # The graphs' outputs of the last update may be overwritten from here on; without
            # this, a second forward before a backward (phase 2's critic steps) would be refused.
            torch.compiler.cudagraph_mark_step_begin()

    def start_from(self, start: Mapping[str, Any] | None, resuming: bool) -> None:
        raise NotImplementedError

    def train_step(self, feed: BatchFeed, step: int) -> list[dict[str, float]]:
        raise NotImplementedError

    def extra_state(self) -> dict[str, Any]:
        return {}

    def content_loss(self, prefix: str, sr_unit: torch.Tensor, hr: torch.Tensor
                     ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Pixel loss + perceptual_weight x VGG loss, both on [0, 1] images.

        [0, 1] (not the generator's [-1, 1]) so that the logged MSE converts straight to the
        PSNR SR papers publish: -10 log10(MSE) on [0, 1] (= 8-bit [0, 255] images). The
        paper's own MSE was on [-1, 1], 4x this value.
        """
        losses = {f"{prefix}/pixel": pixel_loss(sr_unit.float(), hr, self.cfg.pixel_loss)}
        total = losses[f"{prefix}/pixel"]
        if self.vgg is not None:
            losses[f"{prefix}/perceptual"] = self.vgg(sr_unit, hr)
            total = total + self.cfg.perceptual_weight * losses[f"{prefix}/perceptual"]
        return losses, total


def run(phase: Phase, batches: Iterator[Batch], *, start: Mapping[str, Any] | None,
        on_log: OnLog | None, on_checkpoint: OnCheckpoint | None,
        world: World = SINGLE) -> dict[str, Any] | None:
    """Train ``phase`` to ``cfg.iterations`` (or its time budget); the final state.

    ``world``: this rank of a data-parallel run; ``batches`` are its shard. Every rank passes
    the same callbacks; only rank 0 calls them and returns the state (the others None).
    """
    cfg = phase.cfg
    counters = _start(phase, start, world)
    step, batches_before = counters["step"], counters["batches"]
    samples_before = counters["samples"]
    feed = BatchFeed(batches, phase.device, cfg.channels_last, taken=batches_before)
    budget = TimeBudget(cfg.max_minutes, elapsed_before=counters["elapsed_s"])
    meter = Meter(phase.name, cfg.iterations, cfg.log_every, step,
                  on_log if world.main else None, feed, budget, reduce=world.mean,
                  show=world.main)

    def state(stopped_because: str | None) -> dict[str, Any] | None:
        rng = world.rng_states()  # a collective: every rank, at the same steps
        if not world.main:
            return None
        samples = samples_before + (feed.taken - batches_before) * cfg.batch_size * world.size
        counters = {"step": step, "batches": feed.taken, "samples": samples,
                    "elapsed_s": budget.elapsed()}
        optimizers = {key: optimizer for key, (optimizer, _, _) in phase.optimizers.items()}
        return {**snapshot(phase.name, cfg, counters, phase.models, optimizers,
                           phase.perceptual, stopped_because, rng), **phase.extra_state()}

    def budget_used() -> float:
        # The ranks' clocks differ a little: they agree on the largest, so that they train at
        # one learning rate and stop at one step (a rank stopping alone would hang the rest).
        # Without a budget it is 0 on every rank: nothing to agree on.
        return 0.0 if budget.limit_s is None else world.max(budget.used())

    saved_at, stopped_because = step, "iterations"
    with stop.deferred():  # SIGTERM/SIGINT: stop at the next step boundary, checkpoint there
        while step < cfg.iterations:
            _set_learning_rates(phase, lr_factor(cfg, step, budget_used()))
            for values in phase.train_step(feed, step + 1):
                meter.add(values)
            step += 1
            if step % cfg.log_every == 0 or step % cfg.checkpoint_every == 0:
                _read_all(phase, meter)  # a window's or a checkpoint's losses, all checked
            meter.step_done(step)
            signum = _signal_agreed(world)
            if signum:
                stopped_because = signal.Signals(signum).name
                break
            exceeded = (budget.exceeded() if world.size == 1 or budget.limit_s is None
                        else budget_used() > 1)
            if step < cfg.iterations and exceeded and step >= (cfg.min_iterations or 0):
                stopped_because = "max_minutes"
                break
            # The last step's checkpoint is the final state, written below.
            if step % cfg.checkpoint_every == 0 and step < cfg.iterations and on_checkpoint:
                check_finite_weights(phase.models, step)
                checkpoint = state(None)
                if world.main:
                    on_checkpoint(checkpoint)
                saved_at = step
        _read_all(phase, meter)
        final = state(stopped_because)
        meter.flush(step)  # the last, partial window
        meter.close()
        if step != saved_at and on_checkpoint is not None:
            check_finite_weights(phase.models, step)
            if world.main:
                on_checkpoint(final)
    logger.info("%s stopped at step %d (%s)", phase.name, step, stopped_because)
    if stopped_because.startswith("SIG"):
        raise stop.Interrupted(stopped_because, phase.name, step)
    return final


def _read_all(phase: Phase, meter: Meter) -> None:
    for values in phase.losses.drain():
        meter.add(values)


def _signal_agreed(world: World) -> int:
    """The stop signal any rank received (0: none). Every rank asks at every step, so that all
    stop at one step: a rank stopping alone would hang the others in their next collective."""
    return int(world.max(float(stop.requested())))


def _start(phase: Phase, start: Mapping[str, Any] | None, world: World) -> dict[str, Any]:
    """Seed or restore RNG, load the start state into the phase (and its optimisers when
    resuming it), wrap it for ``world``: the counters to continue from."""
    cfg = phase.cfg
    resuming = begin(phase.name, cfg, start, restore_cuda=world.size == 1)
    world.seed(cfg.seed, start, resuming)
    phase.start_from(start, resuming)
    phase.distribute(world)
    if not resuming:
        return {"step": 0, "batches": 0, "samples": 0, "elapsed_s": 0.0}
    for key, (optimizer, _, betas) in phase.optimizers.items():
        restore_optimizer(optimizer, start[key], betas)
    counters = {key: start[key] for key in ("step", "batches", "elapsed_s")}
    # Absent from the checkpoints of one process written before it existed.
    counters["samples"] = start.get("samples", start["batches"] * cfg.batch_size)
    return counters


def _set_learning_rates(phase: Phase, factor: float) -> None:
    for optimizer, base_lr, _ in phase.optimizers.values():
        for group in optimizer.param_groups:
            group["lr"] = base_lr * factor


def prepare(cfg: PhaseParams, device: torch.device, *modules: nn.Module | None
            ) -> tuple[Callable[[], contextlib.AbstractContextManager], torch.dtype | None]:
    """Move the modules to the generator's device and memory format; the autocast context
    and the dtype it runs the convolutions in (None: no autocast, the modules' own)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed patch shapes: pick the fastest convs once
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    for module in modules:
        if module is not None:
            # channels_last (NHWC) lets oneDNN/cuDNN run the convs without layout reorders.
            module.to(device=device, memory_format=memory_format)
    bf16 = use_bf16_autocast(cfg.amp_bf16, device)
    if bf16 and device.type not in ("cuda", "cpu"):
        logger.warning("amp_bf16 is used on CUDA and CPU only; training in float32 on %s", device)
    elif bf16:
        # On CPU bf16 pays off only where oneDNN has bf16 matrix units (AMX, AVX512-BF16);
        # the train-step note in benchmarks/results/ and benchmarks/train_step.py give the figures.
        if device.type == "cpu" and not cpu_has_fast_bf16():
            logger.warning("amp_bf16 on a CPU without AMX/AVX512-BF16: bf16 may be slower than "
                           "float32 here")
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16), torch.bfloat16
    return contextlib.nullcontext, None


def compile_mode(setting: str | None, device: torch.device, world: World) -> str | None:
    """The torch.compile mode a phase trains in (None: eager).

    ``auto``: reduce-overhead on a single CUDA process, where a step is ~600 small kernels
    and launching them costs more than running them (on an H200, phase 1 at batch 16 took 0.40
    of the eager step's time: benchmarks/results/2026-12-04-nvidia-h200-train-step.md); eager
    on a CPU, where compiling costs a minute and the step is compute-bound, and with several
    processes, where CUDA graphs and DDP's gradient buckets are not measured here.
    """
    if setting != "auto":
        return setting
    chosen = "reduce-overhead" if device.type == "cuda" and world.size == 1 else None
    logger.info("compile: auto -> %s (%s, %d process%s)", chosen or "eager", device.type,
                world.size, "" if world.size == 1 else "es")
    return chosen


def adam(params, lr: float, betas, device: torch.device) -> torch.optim.Adam:
    # fused: one kernel for all parameters on CUDA; elsewhere the default (foreach) path.
    return torch.optim.Adam(params, lr=lr, betas=betas,
                            fused=True if device.type == "cuda" else None)
