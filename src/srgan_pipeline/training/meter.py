"""What a training run reports: per-window loss averages, speed, the progress bar, the log line."""

from __future__ import annotations

import logging
from collections.abc import Callable

from tqdm.auto import tqdm

from srgan_pipeline.training import clock
from srgan_pipeline.training.clock import TimeBudget
from srgan_pipeline.training.feed import BatchFeed

logger = logging.getLogger(__name__)

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

OnLog = Callable[[int, dict[str, float]], None]
Reduce = Callable[[dict[str, float]], dict[str, float]]


class Meter:
    """Averages the losses of each window of ``log_every`` steps and reports them once, with
    the speed, the data-wait share (from ``feed``) and the elapsed time (from ``budget``): to
    ``on_log`` (one MLflow call per window), the INFO log and the tqdm bar.

    Data-parallel: ``reduce`` averages a window's metrics over the ranks (every rank flushes
    at the same steps), and only rank 0 ``show``s the bar."""

    def __init__(self, phase: str, iterations: int, log_every: int, step: int,
                 on_log: OnLog | None, feed: BatchFeed, budget: TimeBudget,
                 reduce: Reduce | None = None, show: bool = True):
        self.phase, self.iterations, self.log_every, self.on_log = (phase, iterations,
                                                                    log_every, on_log)
        self.feed, self.budget, self.reduce = feed, budget, reduce
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.last: dict[str, float] = {}
        self.window_start, self.window_steps = clock.now(), 0
        self.bar = tqdm(total=iterations, initial=step, desc=phase,
                        disable=None if show else True,
                        dynamic_ncols=True)

    def add(self, values: dict[str, float]) -> None:
        for key, value in values.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
            self.counts[key] = self.counts.get(key, 0) + 1
        self.last.update(values)

    def step_done(self, step: int) -> None:
        """Count a step; at the end of a window, report the window."""
        self.window_steps += 1
        rate = self.window_steps / max(clock.now() - self.window_start, 1e-9)
        short = {_SHORT[k.split("/", 1)[1]]: f"{v:.3g}" for k, v in self.last.items()}
        self.bar.set_postfix(short | {"it/s": f"{rate:.3g}"}, refresh=False)
        self.bar.update(1)
        if step % self.log_every == 0:
            self.flush(step)

    def flush(self, step: int) -> None:
        """Report the window so far (nothing when it is empty) and start the next one."""
        if not self.window_steps:
            return
        now = clock.now()
        window = max(now - self.window_start, 1e-9)
        metrics = {k: self.sums[k] / self.counts[k] for k in self.sums}
        metrics["time/iters_per_sec"] = self.window_steps / window
        metrics["time/data_wait_share"] = self.feed.reset_wait() / window
        metrics["time/elapsed_s"] = self.budget.elapsed()
        if self.reduce is not None:
            metrics = self.reduce(metrics)
        logger.info("%s step %d/%d: %s", self.phase, step, self.iterations,
                    ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
        if self.on_log is not None:
            self.on_log(step, metrics)
        self.sums, self.counts = {}, {}
        self.window_start, self.window_steps = now, 0

    def close(self) -> None:
        self.bar.close()
