"""MLflow calls for the nodes and hooks, each a no-op when no run is active.

kedro-mlflow opens one MLflow run per ``kedro run`` (except for pipelines listed under
``disable_tracking`` in ``conf/*/mlflow.yml``); nodes add to it. Outside such a run (a unit
test, a notebook) the same nodes work and simply log nothing.

A run killed with ``kill -9`` cannot end its MLflow run, which would stay RUNNING forever.
Every run therefore records which process owns it (:func:`claim_run`), and the next run on the
same host closes the runs whose process is gone (:func:`close_orphaned_runs`); a resumed
training links itself to the run it continues (:func:`link_resumed`).
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import torch
from mlflow.entities import RunStatus

logger = logging.getLogger(__name__)

# Tags naming the process that owns a run: host, pid, and the pid's start time (pids are reused).
HOST, PID, STARTED = "srgan.host", "srgan.pid", "srgan.process_start"
STOPPED_BY = "srgan.stopped_by_signal"  # SIGTERM or SIGINT: the run ended KILLED at it


def active() -> bool:
    return mlflow.active_run() is not None


def run_id() -> str | None:
    run = mlflow.active_run()
    return run.info.run_id if run is not None else None


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    # One batched call: each MLflow call is a transaction against the store (sqlite here).
    if active():
        mlflow.log_metrics(metrics, step=step)


def tracking_uri() -> str:
    return mlflow.get_tracking_uri()


class RunMetrics:
    """``on_log`` for a data-parallel training's rank 0, a process of its own without the
    active run: logs to the node's run by its id, one batched call per window as
    :func:`log_metrics`. (Metrics sent back to the node would need a thread there to drain
    them while it waits for the ranks; rank 0 can reach the tracking store just as well.)"""

    def __init__(self, run: str, uri: str):
        self.run, self.uri = run, uri
        self.client: mlflow.MlflowClient | None = None

    def __call__(self, step: int, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric

        if self.client is None:
            self.client = mlflow.MlflowClient(tracking_uri=self.uri)
        now = int(time.time() * 1000)
        self.client.log_batch(self.run, [Metric(key, float(value), now, step)
                                         for key, value in metrics.items()])


def set_tags(tags: dict[str, object]) -> None:
    if active():
        mlflow.set_tags({key: str(value) for key, value in tags.items()})


def log_image(image: np.ndarray, artifact_file: str) -> None:
    if active():
        mlflow.log_image(image, artifact_file=artifact_file)


def log_dict(data: dict[str, Any], artifact_file: str) -> None:
    if active():
        mlflow.log_dict(data, artifact_file)


def log_state(state: dict[str, Any], artifact_file: str) -> None:
    """``torch.save`` a state dict as an artifact: this run's own state, never a shared file."""
    if not active():
        return
    folder, name = os.path.split(artifact_file)
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(state, os.path.join(tmp, name))
        mlflow.log_artifact(os.path.join(tmp, name), artifact_path=folder or None)


def _process_start(pid: int) -> str | None:
    """The start time of ``pid`` in clock ticks since boot (Linux), or None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22; the name before ")" may hold spaces


def _process_alive(pid: int, started: str | None) -> bool:
    if started is not None and Path("/proc").is_dir():
        return _process_start(pid) == started
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def claim_run() -> None:
    """Tag the active run with the process that owns it (see the module docstring)."""
    set_tags({HOST: socket.gethostname(), PID: os.getpid(),
              STARTED: _process_start(os.getpid()) or ""})


def close_orphaned_runs() -> list[str]:
    """End (as KILLED) the RUNNING runs of this experiment whose owning process is gone.

    Only runs claimed on this host are judged: a process elsewhere cannot be checked.
    """
    run = mlflow.active_run()
    if run is None:
        return []
    client = mlflow.MlflowClient()
    host = socket.gethostname()
    closed = []
    for other in client.search_runs(
        [run.info.experiment_id],
        filter_string=f"attributes.status = 'RUNNING' and tags.`{HOST}` = '{host}'",
    ):
        tags = other.data.tags
        if other.info.run_id == run.info.run_id or _owner_alive(tags) is not False:
            continue
        _close_as_killed(client, other.info.run_id, f"its process {tags[PID]} on {host} was "
                         f"gone when run {run.info.run_id} started")
        logger.warning("Closed MLflow run %s as KILLED: its process %s is gone",
                       other.info.run_id, tags[PID])
        closed.append(other.info.run_id)
    return closed


def _owner_alive(tags: dict[str, str]) -> bool | None:
    """Whether the process that claimed a run lives; None where that cannot be told (a run
    claimed on another host, or never claimed)."""
    if tags.get(HOST) != socket.gethostname() or not tags.get(PID, "").isdigit():
        return None
    return _process_alive(int(tags[PID]), tags.get(STARTED) or None)


def _close_as_killed(client: mlflow.MlflowClient, run: str, reason: str) -> None:
    # Every run this project ends as KILLED says why, and names the run that closed it.
    client.set_tag(run, "srgan.closed_because", reason)
    client.set_terminated(run, status=RunStatus.to_string(RunStatus.KILLED))


def link_resumed(previous_run_id: str | None) -> None:
    """Link this run and the (killed) run whose checkpoint it resumes, both ways."""
    current = run_id()
    if current is None or not previous_run_id or previous_run_id == current:
        return
    client = mlflow.MlflowClient()
    try:
        previous = client.get_run(previous_run_id)
    except mlflow.exceptions.MlflowException:
        logger.warning("The checkpoint was written by MLflow run %s, which this tracking store "
                       "does not hold; not linked", previous_run_id)
        return
    mlflow.set_tag("srgan.resumed_from_run", previous_run_id)
    client.set_tag(previous_run_id, "srgan.resumed_by_run", current)
    if previous.info.status != "RUNNING":
        return
    # We hold the checkpoint's lock, so its writer has left that phase, but a live process
    # may be in its next one (a finished phase 1 resumed beside it): close only a run whose
    # owner is gone, or unknown (a run close_orphaned_runs could not judge: unclaimed).
    if _owner_alive(previous.data.tags):
        logger.info("MLflow run %s, whose checkpoint this run resumes, is still live: left "
                    "RUNNING", previous_run_id)
        return
    _close_as_killed(client, previous_run_id, f"run {current} resumed its checkpoint, whose "
                     "lock its process no longer held")


def end_killed(run: str, signal_name: str, reason: str) -> None:
    """End ``run`` as KILLED, naming the signal that stopped it (after kedro-mlflow ended it
    FAILED: a stop asked for is not a failure, and a run left RUNNING would look alive)."""
    client = mlflow.MlflowClient()
    client.set_tag(run, STOPPED_BY, signal_name)
    client.set_tag(run, "srgan.stopped_because", reason)
    client.set_terminated(run, status=RunStatus.to_string(RunStatus.KILLED))
    logger.warning("Ended MLflow run %s as KILLED (%s)", run, signal_name)
