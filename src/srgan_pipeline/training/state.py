"""Training state: checkpoint snapshots, RNG and optimiser restore, non-finite values refused."""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from srgan_pipeline.checkpoints import describe_generator
from srgan_pipeline.params import PhaseParams
from srgan_pipeline.training.config import RUN_CONTROL

logger = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """A loss (or the weights) became NaN/inf. Raised before any checkpoint is written after
    it, so the last checkpoint written is still good."""


class LossReader:
    """Reads a phase's loss values to the host, refusing non-finite ones.

    ``late=False`` (CPU): each :meth:`take` reads its own losses at once, before the optimiser
    step it precedes, so a NaN stops training with the weights untouched; on a CPU the host
    computed them itself, so reading costs nothing.

    ``late=True`` (CUDA): :meth:`take` keeps its losses on the device and reads the previous
    take's. Reading a value the GPU has not computed yet blocks the host until the GPU is idle;
    one take later the host has already queued the next forward pass, so the GPU never waits
    for the host. A NaN is then found one update later: the loop reads everything left
    (:meth:`drain`) before each log window ends and each checkpoint, so no checkpoint holds
    weights trained past a non-finite loss.
    """

    def __init__(self, late: bool):
        self.late = late
        self.unread: tuple[list[str], torch.Tensor, int] | None = None

    def take(self, losses: dict[str, torch.Tensor], step: int) -> list[dict[str, float]]:
        """Hand over one update's losses; the values ready to log (none, or one dict)."""
        # One stacked copy: a single transfer when read, and no reference kept to a tensor a
        # compiled graph may overwrite at its next replay (CUDA graphs reuse output memory).
        stacked = torch.stack([v.detach().float() for v in losses.values()])
        taken = (list(losses), stacked, step)
        if not self.late:
            return [_finite(*taken, late=False)]
        earlier, self.unread = self.unread, taken
        return [] if earlier is None else [_finite(*earlier, late=True)]

    def drain(self) -> list[dict[str, float]]:
        """The values still unread (at most one dict)."""
        earlier, self.unread = self.unread, None
        return [] if earlier is None else [_finite(*earlier, late=True)]


def _finite(names: list[str], stacked: torch.Tensor, step: int, late: bool) -> dict[str, float]:
    values = dict(zip(names, stacked.tolist(), strict=True))
    for name, value in values.items():
        if not math.isfinite(value):
            when = ("read one update late (as on CUDA, where losses are read at the next "
                    "step); no checkpoint was written after it" if late else
                    "stopped before the optimiser step, the last checkpoint is unaffected")
            raise NonFiniteLossError(f"step {step}: loss {name} = {value}; {when} (lower the "
                                     "learning rate or check the data)")
    return values


def check_finite_weights(models: Mapping[str, nn.Module], step: int) -> None:
    """Never write a checkpoint with non-finite weights (e.g. one overflowing update)."""
    for name, model in models.items():
        if not all(torch.isfinite(p).all() for p in model.parameters()):
            raise NonFiniteLossError(f"step {step}: {name} weights are not finite; not saved")


def snapshot(phase: str, cfg: PhaseParams, counters: Mapping[str, Any],
             models: Mapping[str, nn.Module], optimizers: Mapping[str, torch.optim.Optimizer],
             perceptual: nn.Module | None, stopped_because: str | None,
             rng: dict[str, Any] | None = None) -> dict[str, Any]:
    """The checkpoint/return dict: only weights_only-loadable types, and a snapshot (CPU
    copies): state_dict() returns the live tensors, which the next steps would overwrite
    in a state that a caller keeps in memory. ``rng``: the RNG states of a data-parallel
    run (distributed.World.rng_states); None: this process's."""
    critic, opt_c = models.get("critic"), optimizers.get("optimizer_c")
    state = {
        "phase": phase,
        # step, batches (consumed this phase, per process: make_loader(start_batch=...)),
        # samples (of the patch stream, all processes: make_loader(start_sample=...)), elapsed_s
        **counters,
        "generator": models["generator"].state_dict(),
        "critic": critic.state_dict() if critic is not None else None,
        "optimizer_g": optimizers["optimizer_g"].state_dict(),
        "optimizer_c": opt_c.state_dict() if opt_c is not None else None,
        "config": cfg.model_dump(),
        "generator_config": describe_generator(models["generator"]),
        "perceptual_weights": getattr(perceptual, "weights_source", None),
        # Only torch's RNG drives training (crops are seeded by the sampler, the gradient
        # penalty draws from torch); numpy and random are seeded but never used here.
        "rng": rng or {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        },
        "stopped_because": stopped_because,
    }
    return to_cpu_copy(state)


def to_cpu_copy(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):  # state dicts are OrderedDicts with module versions: keep both
        out = type(obj)((k, to_cpu_copy(v)) for k, v in obj.items())
        if hasattr(obj, "_metadata"):
            out._metadata = obj._metadata
        return out
    if isinstance(obj, list | tuple):
        return type(obj)(to_cpu_copy(v) for v in obj)
    return obj


def begin(phase: str, cfg: PhaseParams, start: Mapping[str, Any] | None,
          restore_cuda: bool = True) -> bool:
    """Seed a fresh run, or restore RNG for a resumed one; True when resuming ``phase``.

    ``restore_cuda=False``: a data-parallel rank, which restores its own GPU's state
    (distributed.World.seed) and must not touch the other GPUs."""
    if start is not None and start["phase"] == phase:
        torch.set_rng_state(start["rng"]["torch"].cpu())
        if restore_cuda and start["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in start["rng"]["cuda"]])
        # Through `kedro run` a resume always has the same settings but RUN_CONTROL (the run
        # identity, resume.py); a caller of the loop may pass any state: name what differs.
        now = cfg.model_dump()
        changed = {key: (value, now[key]) for key, value in start["config"].items()
                   if key in now and key not in RUN_CONTROL and _same(value) != _same(now[key])}
        if changed:
            logger.warning("Resuming %s with changed config (old, new): %s", phase, changed)
        return True
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)  # also seeds every CUDA device
    return False


def _same(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def restore_optimizer(opt: torch.optim.Optimizer, saved: Mapping[str, Any], betas) -> None:
    """Load an optimiser's state; this run's betas win (the loop sets the learning rate)."""
    opt.load_state_dict(saved)
    for group in opt.param_groups:
        group["betas"] = betas
    # Moments in their parameter's memory layout, in case channels_last changed since the
    # checkpoint: fused CUDA Adam needs params, grads and moments with identical strides.
    for param, param_state in opt.state.items():
        for key, value in param_state.items():
            if isinstance(value, torch.Tensor) and value.shape == param.shape:
                param_state[key] = torch.empty_like(param).copy_(value)
