"""README's recovery recipe as a user types it: `kedro run` killed with SIGKILL at a file write,
then the same command with `train_gan.resume=true`; and runs that never mix.

The kill comes from faults/sitecustomize.py (on the child's PYTHONPATH), at the n-th atomic
rename onto a chosen path: inside a checkpoint write, or right after one.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import torch
from conftest import QUIET_ENV, kedro_project
from filelock import FileLock

from srgan_pipeline import tracking

FAULTS = Path(__file__).parent / "faults"
TINY = ",".join([
    "train_gan.num_workers=0", "train_gan.generator.channels=8",
    "train_gan.generator.num_blocks=1", "train_gan.critic.base_channels=8",
    "train_gan.pretrain.iterations=6", "train_gan.pretrain.batch_size=2",
    "train_gan.pretrain.log_every=2", "train_gan.pretrain.checkpoint_every=2",
    "train_gan.adversarial.iterations=4", "train_gan.adversarial.batch_size=2",
    "train_gan.adversarial.n_critic=1", "train_gan.adversarial.log_every=1",
    "train_gan.adversarial.checkpoint_every=2",
])


def kedro(workdir: Path, *args: str, kill: str | None = None) -> subprocess.CompletedProcess:
    """`kedro run --env=quickstart ARGS` in a new process; `kill` arms the fault injector."""
    env = {**os.environ, **QUIET_ENV}
    env.pop("SRGAN_KILL", None)
    if kill:
        env["SRGAN_KILL"] = kill
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(FAULTS), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "kedro", "run", "--env=quickstart", *args],
                          cwd=workdir, env=env, capture_output=True, text=True, timeout=600)


def succeeded(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """A project after the quickstart's data_prep: the training data every test starts from."""
    workdir = tmp_path_factory.mktemp("prepared")
    with pytest.MonkeyPatch.context() as monkeypatch:
        kedro_project(workdir, monkeypatch)
    succeeded(kedro(workdir, "--pipelines=data_prep"))
    return workdir


@pytest.fixture
def project(prepared, tmp_path, monkeypatch) -> Path:
    """A fresh copy of the prepared project (its own checkpoints and mlflow.db)."""
    shutil.copytree(prepared, tmp_path, dirs_exist_ok=True)
    return kedro_project(tmp_path, monkeypatch)


def latest(workdir: Path, name: str) -> dict:
    versions = sorted((workdir / "data" / "06_models" / f"{name}.pt").glob(f"*/{name}.pt"))
    return torch.load(versions[-1], weights_only=True)


def assert_same_weights(a: dict, b: dict) -> None:
    for part in ("generator", "critic"):
        if a.get(part) is not None or b.get(part) is not None:
            assert a[part].keys() == b[part].keys()
            different = [k for k in a[part] if not torch.equal(a[part][k], b[part][k])]
            assert not different, f"{part} differs in {different[:5]}"


@pytest.fixture(scope="module")
def uninterrupted(prepared, tmp_path_factory) -> Path:
    """The tiny training run end to end, never killed: the weights every resume must reach."""
    workdir = tmp_path_factory.mktemp("uninterrupted")
    shutil.copytree(prepared, workdir, dirs_exist_ok=True)
    succeeded(kedro(workdir, "--pipelines=train_gan", f"--params={TINY}"))
    return workdir


def mlflow_runs(workdir: Path) -> list:
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("srgan_pipeline")
    return client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])


@pytest.mark.parametrize("kill", [
    "before:in_progress/pretrain-:2",          # inside phase 1's second checkpoint write
    "after:generator_pretrained.pt:1",         # phase 1 saved, phase 2 not started
    "before:in_progress/adversarial-:2",       # inside phase 2's final checkpoint write
])
def test_a_killed_run_resumes_to_the_uninterrupted_weights(project, uninterrupted, kill):
    killed = kedro(project, "--pipelines=train_gan", f"--params={TINY}", kill=kill)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert not (project / "data/06_models/generator_gan.pt").exists()

    log = succeeded(kedro(project, "--pipelines=train_gan",
                          f"--params={TINY},train_gan.resume=true"))
    assert "Resuming" in log
    for name in ("generator_pretrained", "generator_gan", "critic"):
        assert_same_weights(latest(project, name), latest(uninterrupted, name))

    # MLflow: the killed run is closed, not RUNNING forever, and linked to its resume
    first, second = mlflow_runs(project)
    assert first.info.status == "KILLED" and "srgan.closed_because" in first.data.tags
    assert second.info.status == "FINISHED"
    assert second.data.tags["srgan.resumed_from_run"] == first.info.run_id
    assert first.data.tags["srgan.resumed_by_run"] == second.info.run_id


def test_phase_two_never_resumes_a_checkpoint_of_other_pretrained_weights(project, tmp_path):
    """The issue's case: an adversarial checkpoint is left behind, then phase 1 is resumed and
    trained further, so it ends with other weights: phase 2 must start afresh from those."""
    killed = kedro(project, "--pipelines=train_gan", f"--params={TINY}",
                   kill="after:in_progress/adversarial-:1")
    assert killed.returncode == -signal.SIGKILL
    # The killed run as the suite once found one: without the tags naming its process, so the
    # next run cannot judge it an orphan; its resume must still close it with the reason.
    (unclaimed,) = mlflow_runs(project)
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    for tag in (tracking.HOST, tracking.PID, tracking.STARTED):
        client.delete_tag(unclaimed.info.run_id, tag)
    longer = TINY.replace("pretrain.iterations=6", "pretrain.iterations=8")
    log = succeeded(kedro(project, "--pipelines=train_gan", f"--params={longer},"
                                                             "train_gan.resume=true"))
    assert "Resuming pretrain from step 6" in log
    assert "Not resuming from" in log and "started_from" in log
    first, second = mlflow_runs(project)
    assert first.info.status == "KILLED"
    assert second.info.run_id in first.data.tags["srgan.closed_because"]

    reference = tmp_path.parent / f"{tmp_path.name}_reference"
    shutil.copytree(project, reference, ignore=shutil.ignore_patterns("06_models", "mlflow.db"))
    succeeded(kedro(reference, "--pipelines=train_gan", f"--params={longer}"))
    for name in ("generator_pretrained", "generator_gan", "critic"):
        assert_same_weights(latest(project, name), latest(reference, name))


def test_each_run_logs_its_own_checkpoints_and_a_live_run_is_never_shared(project):
    """Two runs of other settings side by side in one project, and a third identical to one
    that is still training: the MLflow artifacts are each run's own returned weights, and the
    identical run is refused instead of writing the other's in-progress file."""
    other = f"{TINY},train_gan.pretrain.seed=1"
    runs = []
    for params in (TINY, other):
        runs.append(subprocess.Popen([sys.executable, "-m", "kedro", "run", "--env=quickstart",
                                      "--pipelines=train_gan", f"--params={params}"],
                                     cwd=project, env={**os.environ, **QUIET_ENV},
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True))
        # Kedro names a run's versions by its start time in milliseconds: two runs started in
        # the same millisecond would collide on them (Kedro then refuses the second save).
        time.sleep(0.5)
    for run in runs:
        assert run.wait(timeout=600) == 0, run.stderr.read()[-3000:]

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    outputs = {}
    for folder in (project / "data/06_models/generator_gan.pt").iterdir():
        state = torch.load(folder / "generator_gan.pt", weights_only=True)
        outputs[state["mlflow_run_id"]] = state
    assert len(outputs) == 2
    for run in mlflow_runs(project):
        artifact = client.download_artifacts(run.info.run_id, "checkpoints/adversarial.pt",
                                             str(project / run.info.run_id))
        assert_same_weights(torch.load(artifact, weights_only=True), outputs[run.info.run_id])
    first, second = outputs.values()
    assert first["run_identity"]["digest"] != second["run_identity"]["digest"]

    # the same settings again while a process holds that run's checkpoint
    checkpoint = latest(project, "generator_pretrained")
    digest = checkpoint["run_identity"]["digest"]
    lock = project / "data/06_models/in_progress" / f"pretrain-{digest}.pt.lock"
    with FileLock(str(lock)):
        refused = kedro(project, "--pipelines=train_gan",
                        f"--params={TINY if checkpoint['config']['seed'] == 0 else other}")
    assert refused.returncode != 0
    assert "another process is training this very run now" in refused.stdout + refused.stderr


def test_a_plain_state_dict_pinned_as_a_checkpoint_is_refused_clearly(uninterrupted, tmp_path):
    version = "2026-01-01T00.00.00.000Z"
    target = uninterrupted / "data/06_models/generator_gan.pt" / version / "generator_gan.pt"
    target.parent.mkdir(parents=True)
    torch.save(latest(uninterrupted, "generator_gan")["generator"], target)
    try:
        inputs = tmp_path / "in"
        shutil.copytree(uninterrupted / "data/05_model_input/eval/skimage_heldout/LR_x4", inputs)
        done = kedro(uninterrupted, "--pipelines=upscale", f"--params=upscale.input_dir={inputs}",
                     f"--load-versions=generator_gan:{version}")
    finally:
        shutil.rmtree(target.parent)
    assert done.returncode != 0
    message = done.stdout + done.stderr
    assert "is a plain state dict" in message and "not a generator checkpoint" in message
    assert "KeyError" not in message
