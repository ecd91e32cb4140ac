"""The learning-rate multiplier of a generator step.

A pure function of (settings, step, share of the time budget spent) rather than a torch
``LRScheduler``: the cosine follows the wall-clock budget when that ends the run first, which a
step-counting scheduler cannot express, and a function of the step needs no state of its own to
resume exactly (the step is in every checkpoint).
"""

from __future__ import annotations

import bisect
import math

from srgan_pipeline.params import PhaseParams


def lr_factor(cfg: PhaseParams, step: int, budget_used: float = 0.0) -> float:
    """Multiplier of the learning rate for the update after ``step`` completed steps.

    Linear warm-up over ``warmup_steps``, then:

    * constant: 1;
    * cosine: from 1 to 0 over the run, following whichever ends it first, the iteration
      count or the time budget (``budget_used`` = share of max_minutes spent); under a floor
      (``min_iterations``) the budget's share counts at most as far as the floor's, so a run
      the floor keeps going still decays to 0 at its last step;
    * step: ``lr_gamma`` to the power of the milestones passed (``torch.optim.lr_scheduler.
      MultiStepLR``'s rule; the paper's phase 2 is milestone 10^5, gamma 0.1).
    """
    warm = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0
    if cfg.lr_schedule == "constant":
        return warm
    if cfg.lr_schedule == "step":
        return warm * cfg.lr_gamma ** bisect.bisect_right(cfg.lr_milestones, step)
    if cfg.min_iterations is not None:
        budget_used = min(budget_used, step / cfg.min_iterations)
    progress = min(1.0, max(step / cfg.iterations, budget_used))
    return warm * 0.5 * (1.0 + math.cos(math.pi * progress))
