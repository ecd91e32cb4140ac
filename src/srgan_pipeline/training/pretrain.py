"""Phase 1 (SRResNet): pixel loss + perceptual_weight x VGG loss, Adam; optionally an EMA."""

from __future__ import annotations

import collections
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn, update_bn

from srgan_pipeline.checkpoints import load_generator_state
from srgan_pipeline.models import Generator, hr_to_unit
from srgan_pipeline.params import PretrainParams
from srgan_pipeline.training.distributed import SINGLE, World
from srgan_pipeline.training.feed import Batch, BatchFeed
from srgan_pipeline.training.loop import OnCheckpoint, Phase, adam, run
from srgan_pipeline.training.meter import OnLog
from srgan_pipeline.training.state import to_cpu_copy

_BN_BATCHES = 20  # batches that set the EMA copy's BatchNorm statistics at each snapshot


def pretrain(
    generator: Generator,
    batches: Iterator[Batch],
    perceptual: nn.Module | None,
    cfg: PretrainParams,
    *,
    start: Mapping[str, Any] | None = None,
    on_log: OnLog | None = None,
    on_checkpoint: OnCheckpoint | None = None,
    world: World = SINGLE,
) -> dict[str, Any] | None:
    """Train ``generator`` in place on its current device; ``batches`` yields (LR, HR) in [0, 1].

    ``start``: a "pretrain" state to resume. Returns the final state (as checkpointed).
    ``world``: this process's rank in data-parallel training (loop.run).
    """
    return run(Pretraining(cfg, generator, perceptual), batches, start=start, on_log=on_log,
               on_checkpoint=on_checkpoint, world=world)


class Pretraining(Phase):
    name = "pretrain"
    schema = PretrainParams

    def __init__(self, cfg: PretrainParams, generator: Generator, perceptual: nn.Module | None):
        super().__init__(cfg, generator, perceptual)
        self.optimizer = adam(generator.parameters(), cfg.lr, cfg.betas, self.device)
        self.optimizers = {"optimizer_g": (self.optimizer, cfg.lr, cfg.betas)}
        self.ema = _ema_of(generator, cfg.ema_decay)
        # The last LR batches, to give the EMA copy BatchNorm statistics of its own weights;
        # saved with each checkpoint, so a resumed run recomputes them from the same batches.
        self.recent_inputs: collections.deque[torch.Tensor] = collections.deque(
            maxlen=_BN_BATCHES)

    def start_from(self, start: Mapping[str, Any] | None, resuming: bool) -> None:
        if start is not None and start["phase"] != "pretrain":
            raise ValueError(f"pretrain cannot resume a {start['phase']!r} state")
        if not resuming:
            return
        load_generator_state(self.generator, start)
        if self.ema is not None and start.get("generator_ema") is not None:
            self.ema.module.load_state_dict(start["generator_ema"])
            self.ema.n_averaged.fill_(start["step"])
        self.recent_inputs.extend(x.to(self.device) for x in start.get("ema_bn_inputs") or [])

    def train_step(self, feed: BatchFeed, step: int) -> list[dict[str, float]]:
        low_res, high_res = feed.next()
        self.step_begins()
        with self.autocast():
            sr_unit = hr_to_unit(self.train_generator(low_res))
            losses, total = self.content_loss("pretrain", sr_unit, high_res)
        losses["pretrain/total"] = total
        values = self.losses.take(losses, step)  # on CPU before the update (LossReader)
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        if self.ema is not None:
            _update_ema(self.ema, self.generator)
            self.recent_inputs.append(low_res)
        return values

    def extra_state(self) -> dict[str, Any]:
        if self.ema is None:
            return {"generator_ema": None, "ema_bn_inputs": None}
        if self.recent_inputs:  # else: resumed from a state without them, loaded stats stand
            update_bn(self.recent_inputs, self.ema.module)
        return {"generator_ema": to_cpu_copy(self.ema.module.state_dict()),
                "ema_bn_inputs": to_cpu_copy(list(self.recent_inputs))}


def _update_ema(ema: AveragedModel, model: nn.Module) -> None:
    """``ema.update_parameters(model)`` without its host syncs, the same arithmetic.

    torch's version moves the CPU counter ``n_averaged`` to the GPU for its averaging function
    at every update, a copy the host waits on; the EMA's function ignores the count. Here the
    count stays on the CPU, and the first update copies, as torch's does.
    """
    averaged = [p.detach() for p in ema.module.parameters()]
    current = [p.detach() for p in model.parameters()]
    if ema.n_averaged.item() == 0:  # a CPU tensor: no device sync
        for p_averaged, p_model in zip(averaged, current, strict=True):
            p_averaged.copy_(p_model)
    else:
        ema.multi_avg_fn(averaged, current, ema.n_averaged)
    # Buffers follow the model (use_buffers=False); update_bn replaces them at each snapshot.
    for b_averaged, b_model in zip(ema.module.buffers(), model.buffers(), strict=True):
        b_averaged.detach().copy_(b_model.detach())
    ema.n_averaged += 1


def _ema_of(generator: Generator, decay: float | None) -> AveragedModel | None:
    """An exponential moving average of the generator's weights (torch.optim.swa_utils).

    Only parameters are averaged. Averaging BatchNorm's running statistics as well
    (use_buffers=True) pairs averaged weights with statistics of other weights, which scored
    far below the raw weights (docs/training.md, "Convergence on a CPU budget"). Instead each
    snapshot recomputes them for the averaged weights from the last ``_BN_BATCHES`` training
    inputs (swa_utils.update_bn, as SWA does).
    """
    if decay is None:
        return None
    return AveragedModel(generator, multi_avg_fn=get_ema_multi_avg_fn(decay))
