"""Stopping at SIGTERM and SIGINT: what ``docker stop``, Kubernetes, Slurm preemption and
Ctrl-C send.

A training loop stops at its next step boundary, writes its checkpoint there and raises
:class:`Interrupted` (``deferred``: the loop's own window); anywhere else in a ``kedro run``
the signal raises :class:`Interrupted` at once, as Ctrl-C raises KeyboardInterrupt. Interrupted
is an ``Exception``, so Kedro hands it to the ``on_pipeline_error`` hooks, which end the MLflow
run as KILLED with the signal's name (hooks.py); Python's own KeyboardInterrupt bypasses them
and MLflow's exit handler would end the run FINISHED. SIGKILL cannot be caught: the last
checkpoint written stays good.
"""

from __future__ import annotations

import contextlib
import re
import signal
import threading
from collections.abc import Iterator

SIGNALS = (signal.SIGTERM, signal.SIGINT)
_MESSAGE = re.compile(r"training stopped by (SIG[A-Z]+)")


class Interrupted(Exception):
    """The run was stopped by ``signal_name``; the message says how to continue."""

    def __init__(self, signal_name: str, phase: str | None = None, step: int | None = None):
        where = f" at {phase} step {step}, checkpoint written" if phase else ""
        super().__init__(f"training stopped by {signal_name}{where}: the last checkpoint is "
                         "good, continue with train_gan.resume=true")
        self.signal_name, self.phase, self.step = signal_name, phase, step


def named_in(message: str) -> str | None:
    """The signal an :class:`Interrupted` message names (a rank's error text), or None."""
    found = _MESSAGE.search(message)
    return found.group(1) if found else None


class _State:
    received: int | None = None  # the first signal while deferred, not yet acted on
    deferring = 0
    previous: dict[int, object] = {}


def _handle(signum: int, frame) -> None:
    if _State.deferring:
        _State.received = _State.received or signum
        return
    raise Interrupted(signal.Signals(signum).name)


def install() -> bool:
    """Handle SIGTERM and SIGINT in this process (False where it cannot: not the main thread,
    whose handlers Python alone may set)."""
    if threading.current_thread() is not threading.main_thread() or _State.previous:
        return False
    _State.received = None
    _State.previous = {sig: signal.signal(sig, _handle) for sig in SIGNALS}
    return True


def uninstall() -> None:
    """Put back the handlers :func:`install` replaced."""
    for sig, handler in _State.previous.items():
        signal.signal(sig, handler)
    _State.previous = {}


@contextlib.contextmanager
def handlers() -> Iterator[None]:
    """The current handlers again on leaving (torch's launcher sets its own and keeps them)."""
    saved = {sig: signal.getsignal(sig) for sig in SIGNALS}
    try:
        yield
    finally:
        if threading.current_thread() is threading.main_thread():
            for sig, handler in saved.items():
                signal.signal(sig, handler)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """While inside, a signal is only recorded: :func:`requested` tells the loop."""
    _State.deferring += 1
    try:
        yield
    finally:
        _State.deferring -= 1


def requested() -> int:
    """The signal number received while deferred (0: none)."""
    return _State.received or 0
