"""SIGTERM and SIGINT during training, as `docker stop`, Kubernetes, Slurm and Ctrl-C send
them, in one process and under `train_gan.distributed.nproc_per_node=2`: a checkpoint at the
next step boundary, the MLflow run KILLED naming the signal, the lock free, a non-zero exit,
and `train_gan.resume=true` ending with the uninterrupted run's weights.

The signal comes from faults/sitecustomize.py right after the first checkpoint write (step 2
of 6), so the step it stops at is certain: 3.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import QUIET_ENV, copy_project
from filelock import FileLock
from test_resume import FAULTS, TINY, assert_same_weights, kedro, latest, mlflow_runs, succeeded

PHASE_ONE = "--nodes=pretrain_generator"


def settings(processes: int) -> str:
    return f"{TINY},train_gan.distributed.nproc_per_node={processes}"


@pytest.fixture(scope="module")
def prepared(tiny_quickstart, tmp_path_factory) -> Path:
    """The session's quickstart project without its models and MLflow runs: its data_prep."""
    workdir = copy_project(tiny_quickstart[0], tmp_path_factory.mktemp("prepared_signals"))
    shutil.rmtree(workdir / "data" / "06_models")
    shutil.rmtree(workdir / "mlruns", ignore_errors=True)
    (workdir / "mlflow.db").unlink(missing_ok=True)
    return workdir


@pytest.fixture(scope="module")
def uninterrupted(prepared, tmp_path_factory):
    """The phase-1 weights of an uninterrupted run, per number of processes (run once each)."""
    done: dict[int, dict] = {}

    def weights(processes: int) -> dict:
        if processes not in done:
            workdir = copy_project(prepared, tmp_path_factory.mktemp(f"uninterrupted{processes}"))
            succeeded(kedro(workdir, "--pipelines=train_gan", PHASE_ONE,
                            f"--params={settings(processes)}"))
            done[processes] = latest(workdir, "generator_pretrained")
        return done[processes]

    return weights


def kedro_job(workdir: Path, *args: str, kill: str) -> subprocess.CompletedProcess:
    """test_resume's `kedro` with the fault injector armed, in a process group of its own, as
    a shell runs a job: a signal to the group reaches the run and its ranks, not pytest."""
    env = {**os.environ, **QUIET_ENV, "SRGAN_KILL": kill,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(FAULTS), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "kedro", "run", "--env=quickstart", *args],
                          cwd=workdir, env=env, capture_output=True, text=True, timeout=600,
                          process_group=0)


def in_progress(workdir: Path) -> Path:
    (path,) = (workdir / "data/06_models/in_progress").glob("pretrain-*.pt")
    return path


@pytest.mark.parametrize(("name", "whom", "processes"), [
    ("TERM", "self", 1),    # docker stop, Kubernetes: to the one process
    ("INT", "group", 2),    # Ctrl-C in a terminal, Slurm: to every process at once
    ("TERM", "parent", 2),  # to the `kedro run` only, which passes it to its ranks
])
def test_a_signal_checkpoints_ends_the_run_killed_and_resumes_bit_exact(
        prepared, uninterrupted, tmp_path, name, whom, processes):
    project = copy_project(prepared, tmp_path / "project")
    stopped = kedro_job(project, "--pipelines=train_gan", PHASE_ONE,
                        f"--params={settings(processes)}",
                        kill=f"after:in_progress/pretrain-:1:{whom}:{name}")
    output = " ".join((stopped.stdout + stopped.stderr).split())
    assert stopped.returncode > 0, output[-3000:]  # reported by kedro, not killed by it
    assert f"training stopped by SIG{name}" in output
    path = in_progress(project)
    checkpoint = torch.load(path, weights_only=True)
    # written at the signal: the step after the one it came at, not the last regular one
    assert (checkpoint["step"], checkpoint["stopped_because"]) == (3, f"SIG{name}")
    (run,) = mlflow_runs(project)
    assert run.info.status == "KILLED"
    assert run.data.tags["srgan.stopped_by_signal"] == f"SIG{name}"
    with FileLock(f"{path}.lock").acquire(timeout=0):  # released: a resume may take it
        pass

    log = succeeded(kedro(project, "--pipelines=train_gan", PHASE_ONE,
                          f"--params={settings(processes)},train_gan.resume=true"))
    assert "Resuming pretrain from step 3" in log
    assert_same_weights(latest(project, "generator_pretrained"), uninterrupted(processes))
    first, second = mlflow_runs(project)
    assert (first.info.status, second.info.status) == ("KILLED", "FINISHED")
    assert second.data.tags["srgan.resumed_from_run"] == first.info.run_id
