"""Training stopped from outside, through `kedro run` as a user types it.

SIGTERM and SIGINT, as `docker stop`, Kubernetes, Slurm and Ctrl-C send them, in one process
and under `train_gan.distributed.nproc_per_node=2`: a checkpoint at the next step boundary,
the MLflow run KILLED naming the signal, the lock free, a non-zero exit, and
`train_gan.resume=true` ending with the uninterrupted run's weights. The signal comes from
faults/sitecustomize.py right after the first checkpoint write (step 2 of 6), so the step it
stops at is certain: 3. And the ports two processes open on one machine: loopback only.

A full disk and output folders that cannot be written: test_disk_full.py.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import QUIET_ENV, copy_project, latest_checkpoint
from filelock import FileLock
from test_resumed_training import (
    FAULTS,
    LISTENING,
    assert_same_weights,
    kedro,
    mlflow_runs,
    prepared,
    settings,
    succeeded,
    uninterrupted_run,
)

__all__ = ["prepared"]  # test_resumed_training's module fixture, built again for this file

PHASE_ONE = "--nodes=pretrain_generator"


@pytest.fixture(scope="module")
def uninterrupted(tiny_quickstart, tmp_path_factory):
    """The phase-1 weights of an uninterrupted run, per number of processes (the session's
    runs: test_resumed_training.uninterrupted_run)."""
    def weights(processes: int) -> dict:
        workdir = uninterrupted_run(tiny_quickstart, tmp_path_factory, processes)
        return latest_checkpoint(workdir, "generator_pretrained")

    return weights


def kedro_job(workdir: Path, *args: str, kill: str = "", env: dict[str, str] | None = None
              ) -> subprocess.CompletedProcess:
    """test_resumed_training's `kedro` with the fault injector armed (``kill``), in a process
    group of its own, as a shell runs a job: a signal to the group reaches the run and its
    ranks, not pytest. Kedro's error box as wide as its longest line (COLUMNS), so no path is
    cut."""
    env = {**os.environ, **QUIET_ENV, "SRGAN_KILL": kill, "COLUMNS": "400",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(FAULTS), os.environ.get("PYTHONPATH")])),
           **(env or {})}
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
    assert_same_weights(latest_checkpoint(project, "generator_pretrained"),
                        uninterrupted(processes))
    first, second = mlflow_runs(project)
    assert (first.info.status, second.info.status) == ("KILLED", "FINISHED")
    assert second.data.tags["srgan.resumed_from_run"] == first.info.run_id


def test_two_processes_on_one_machine_listen_on_loopback_only(tiny_quickstart, tmp_path_factory):
    """torch's rendezvous stores (in the `kedro run`) and gloo (in the ranks), recorded by the
    ranks' process group while rank 0 writes its first checkpoint (in the session's
    two-process run)."""
    log = uninterrupted_run(tiny_quickstart, tmp_path_factory, 2) / LISTENING
    addresses = [listening_address(line.split()[1]) for line in log.read_text().splitlines()]
    assert len(addresses) >= 2, addresses  # the launcher's stores at least
    assert all(address.is_loopback for address in addresses), addresses


def listening_address(field: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The address of a /proc/net/tcp{,6} `local_address` field (hex, 32-bit words in host
    order, i.e. little-endian here); an IPv4-mapped IPv6 address as its IPv4 address."""
    raw = bytes.fromhex(field.split(":")[0])
    address = ipaddress.ip_address(b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4)))
    return getattr(address, "ipv4_mapped", None) or address
