"""The training loops' clock and time budget.

Everything in training/ reads the time through ``clock.now``, so a test can fake the passing
of time (``monkeypatch.setattr(clock, "now", ...)``) to check the ``max_minutes`` stop.
"""

from __future__ import annotations

import time

now = time.perf_counter


class TimeBudget:
    """Wall-clock accounting of a phase: ``max_minutes`` counts this invocation only, while
    ``elapsed`` includes the time spent before a resume (recorded in the checkpoint)."""

    def __init__(self, max_minutes: float | None, elapsed_before: float = 0.0):
        self.limit_s = None if max_minutes is None else max_minutes * 60
        self.started = now()
        self.origin = self.started - elapsed_before

    def used(self) -> float:
        """Share of max_minutes spent by this invocation (0 without a budget)."""
        return 0.0 if self.limit_s is None else (now() - self.started) / self.limit_s

    def exceeded(self) -> bool:
        return self.limit_s is not None and now() - self.started > self.limit_s

    def elapsed(self) -> float:
        return now() - self.origin
