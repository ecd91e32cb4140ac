"""Process-parallel map for data_prep: every core, results in input order, bounded memory.

Why not ``Pool.imap``: it submits every task at once and queues results without limit, so a slow
consumer lets finished images pile up in RAM. ``ordered_map`` keeps at most ``2 x workers``
tasks in flight and yields results in input order, so outputs do not depend on which worker
finished first (byte-identical to a one-worker run) and memory holds a few images, not a data set.

Workers start the platform's default way: ``fork`` on Linux (as PyTorch's DataLoader workers
do; a ``spawn``ed worker re-imports the ``kedro`` command and the project first, which
costs seconds a worker), ``spawn`` on macOS and Windows. So ``fn``
must be a top-level function of an importable module and its arguments picklable (the tests
also run under ``spawn``). One pool per worker count is kept for the life of the process: the
stages of one ``kedro run`` share it and pay the start-up once.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

T = TypeVar("T")

_pools: dict[int, ProcessPoolExecutor] = {}
_CONTEXT = multiprocessing.get_context()  # the platform's default start method


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, not the machine's count)."""
    if hasattr(os, "process_cpu_count"):  # Python 3.13+
        return os.process_cpu_count() or 1
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def resolve_workers(value: Any, param: str) -> int:
    """``null`` -> every available core; otherwise a positive integer."""
    if value is None:
        return available_cores()
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{param} must be a positive integer or null (= all cores, "
                         f"{available_cores()} here), got {value!r}")
    return value


def ordered_map(
    fn: Callable[..., T], tasks: Iterable[tuple], workers: int, desc: str,
    progress: bool = True, total: int | None = None,
) -> Iterator[T]:
    """``fn(*task)`` for every task, in task order; in ``workers`` processes when > 1."""
    bar = tqdm(total=total, desc=desc, unit="img", disable=not progress, leave=False)
    try:
        if workers <= 1:
            for task in tasks:
                yield fn(*task)
                bar.update()
            return
        pool, cwd = _pool(workers), os.getcwd()
        pending: deque[Future] = deque()
        try:
            for task in tasks:
                pending.append(pool.submit(_in_directory, cwd, fn, *task))
                if len(pending) >= 2 * workers:
                    yield pending.popleft().result()
                    bar.update()
            while pending:
                yield pending.popleft().result()
                bar.update()
        except BrokenProcessPool:  # a worker died (e.g. out of memory): start afresh next time
            _pools.pop(workers, None)
            raise
    finally:
        bar.close()


def _in_directory(cwd: str, fn: Callable[..., T], *args: Any) -> T:
    """Run in the caller's working directory: pooled workers outlive a ``chdir`` of the caller,
    and data_prep's paths (``data_prep.raw_dir``, builtin sources) may be relative."""
    if os.getcwd() != cwd:
        os.chdir(cwd)
    return fn(*args)


def _one_thread_each() -> None:
    """The processes are the parallelism: BLAS threads on top (OpenBLAS starts one per core, used
    by imresize's matrix products) would oversubscribe every core, and oversubscribed BLAS
    threads wait on each other instead of working."""
    threadpool_limits(1)


def _pool(workers: int) -> ProcessPoolExecutor:
    if workers not in _pools:
        _pools[workers] = ProcessPoolExecutor(workers, mp_context=_CONTEXT,
                                              initializer=_one_thread_each)
    return _pools[workers]


@atexit.register
def _shutdown_pools() -> None:
    for pool in _pools.values():
        pool.shutdown(cancel_futures=True)
    _pools.clear()
