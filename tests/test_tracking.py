"""How a resumed training closes the MLflow run it continues (tracking.link_resumed).

A resume holds the in-progress checkpoint's lock, so the run that wrote the checkpoint has left
that phase; it is ended KILLED, with the reason, unless its process is still alive (it may be
training its next phase). The kill-and-resume commands themselves are in
tests/pipelines/train_gan/test_resumed_training.py; these cases need a process that is certainly
alive or certainly gone, which a test here can arrange exactly.
"""

from __future__ import annotations

import subprocess
import sys

import mlflow
import pytest

from srgan_pipeline import tracking


@pytest.fixture(scope="module")
def client(tmp_path_factory) -> mlflow.MlflowClient:
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    yield mlflow.MlflowClient(tracking_uri=uri)
    mlflow.set_tracking_uri(None)  # back to the default for the tests after these


# Runs go to this store's Default experiment by id: the process-wide active experiment may be
# one an earlier test in this process chose, in another store.
DEFAULT = "0"


def previous_run(client: mlflow.MlflowClient, owner: dict[str, str]) -> str:
    """A RUNNING run whose checkpoint is about to be resumed, claimed as ``owner`` says."""
    run = client.create_run(DEFAULT, tags=owner).info.run_id
    assert client.get_run(run).info.status == "RUNNING"
    return run


def resume(previous: str) -> None:
    with mlflow.start_run(experiment_id=DEFAULT):
        tracking.link_resumed(previous)


def dead_process() -> dict[str, str]:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return {tracking.HOST: tracking.socket.gethostname(), tracking.PID: done.stdout.strip(),
            tracking.STARTED: "1"}


@pytest.mark.parametrize("owner", [dead_process, dict], ids=["its process gone", "unclaimed"])
def test_the_resumed_run_is_closed_killed_with_the_reason(client, owner):
    previous = previous_run(client, owner())
    resume(previous)
    run = client.get_run(previous)
    assert run.info.status == "KILLED"
    assert "resumed its checkpoint" in run.data.tags["srgan.closed_because"]


def test_a_resumed_run_whose_process_lives_is_left_running(client):
    with mlflow.start_run(experiment_id=DEFAULT) as live:  # still training, in this process
        tracking.claim_run()
        with mlflow.start_run(experiment_id=DEFAULT, nested=True):
            tracking.link_resumed(live.info.run_id)
        run = client.get_run(live.info.run_id)
    assert run.info.status == "RUNNING"
    assert "srgan.closed_because" not in run.data.tags
    assert run.data.tags["srgan.resumed_by_run"]
