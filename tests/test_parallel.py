"""ordered_map: results in task order from any number of processes, in the caller's folder."""

import multiprocessing
import os

import pytest

from srgan_pipeline import parallel
from srgan_pipeline.parallel import available_cores, ordered_map, resolve_workers


def test_results_come_in_task_order_from_two_processes():
    tasks = [(n, 3) for n in range(20)]
    assert list(ordered_map(pow, tasks, 2, "pow")) == [n**3 for n in range(20)]
    assert list(ordered_map(pow, tasks, 1, "pow")) == [n**3 for n in range(20)]


def test_spawned_workers_too(monkeypatch):
    """spawn is the default on macOS and Windows: tasks and functions must pickle by name."""
    parallel._shutdown_pools()
    monkeypatch.setattr(parallel, "_CONTEXT", multiprocessing.get_context("spawn"))
    try:
        assert list(ordered_map(pow, [(2, 5), (3, 2)], 2, "pow")) == [32, 9]
    finally:
        parallel._shutdown_pools()


def test_workers_follow_the_callers_working_directory(tmp_path, monkeypatch):
    list(ordered_map(os.getpid, [()], 2, "start the pool"))  # workers started elsewhere
    monkeypatch.chdir(tmp_path)
    (tmp_path / "relative.txt").write_text("here")
    assert list(ordered_map(os.path.exists, [("relative.txt",)] * 4, 2, "exists")) == [True] * 4


def test_a_failing_task_raises_in_the_caller():
    with pytest.raises(ZeroDivisionError):
        list(ordered_map(divmod, [(1, 1), (1, 0)], 2, "divide"))


def test_workers_setting():
    assert resolve_workers(None, "data_prep.workers") == available_cores() >= 1
    assert resolve_workers(3, "data_prep.workers") == 3
    for bad in (0, -2, 1.5, "4", True):
        with pytest.raises(ValueError, match=r"data_prep.workers must be a positive integer"):
            resolve_workers(bad, "data_prep.workers")
