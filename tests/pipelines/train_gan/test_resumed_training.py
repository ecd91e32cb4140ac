"""docs/training.md's recovery recipe as a user types it: `kedro run` killed with SIGKILL at a file
write, then the same command with `train_gan.resume=true`. Runs that never mix (other
pretrained weights, other pixels, two runs at once): test_runs_never_mix.py.

The kill comes from faults/sitecustomize.py (on the child's PYTHONPATH), at the n-th atomic
rename onto a chosen path: inside a checkpoint write, or right after one.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import mlflow
import pytest
import torch
from conftest import kedro as run_kedro
from conftest import kedro_project, latest_checkpoint, tiny_training

FAULTS = Path(__file__).parent / "faults"
TINY = tiny_training({"pretrain.iterations": 6, "pretrain.log_every": 2,
                     "pretrain.checkpoint_every": 2, "adversarial.iterations": 4,
                     "adversarial.log_every": 1, "adversarial.checkpoint_every": 2})


def kedro(workdir: Path, *args: str, kill: str | None = None,
          env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`kedro run --env=quickstart ARGS` in a new process (conftest's `kedro`); `kill` arms the
    fault injector; ``env`` entries are added to the child's environment."""
    faults = {"SRGAN_KILL": kill or ""} | (env or {})
    if kill or faults.get("SRGAN_RECORD_SAMPLES"):
        faults["PYTHONPATH"] = os.pathsep.join(filter(None, [str(FAULTS),
                                                             os.environ.get("PYTHONPATH")]))
    return run_kedro(workdir, "run", "--env=quickstart", *args, env=faults)


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


# Per phase of TINY: (iterations, log_every, a metric it logs every window).
PHASES = {"pretrain": (6, 2, "pretrain/pixel"), "adversarial": (4, 1, "gan/adversarial")}


@pytest.mark.parametrize(("kill", "resumed"), [
    # inside phase 1's second checkpoint write: phase 1 continues from its first (step 2)
    ("before:in_progress/pretrain-:2", {"pretrain": 2, "adversarial": 0}),
    # phase 1 saved, phase 2 not started: phase 1 has nothing left to do
    ("after:generator_pretrained.pt:1", {"pretrain": 6, "adversarial": 0}),
    # inside phase 2's final checkpoint write: phase 2 continues from its step 2
    ("before:in_progress/adversarial-:2", {"pretrain": 6, "adversarial": 2}),
])
def test_a_killed_run_resumes_to_the_uninterrupted_weights(project, uninterrupted, kill, resumed):
    killed = kedro(project, "--pipelines=train_gan", f"--params={TINY}", kill=kill)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert not (project / "data/06_models/generator_gan.pt").exists()

    log = succeeded(kedro(project, "--pipelines=train_gan",
                          f"--params={TINY},train_gan.resume=true"))
    log = " ".join(log.split())  # the console wraps long log lines
    for name in ("generator_pretrained", "generator_gan", "critic"):
        assert_same_weights(latest_checkpoint(project, name),
                            latest_checkpoint(uninterrupted, name))

    # MLflow: the killed run is closed, not RUNNING forever, and linked to its resume
    first, second = mlflow_runs(project)
    assert first.info.status == "KILLED" and "srgan.closed_because" in first.data.tags
    assert second.info.status == "FINISHED"
    assert second.data.tags["srgan.resumed_from_run"] == first.info.run_id
    assert first.data.tags["srgan.resumed_by_run"] == second.info.run_id

    # Each phase continued from the very step of its checkpoint, not from 0 (CPU training is
    # deterministic: a phase retrained from scratch also ends bit-equal, so only the log and
    # the metric history tell): the resumed run logs the windows after that step and none
    # before, and the killed run had logged every window up to it.
    for phase, step in resumed.items():
        iterations, every, metric = PHASES[phase]
        if step:
            assert f"Resuming {phase} from step {step}" in log
        else:
            assert f"Resuming {phase}" not in log
        assert metric_steps(project, second, metric) == list(
            range(step + every, iterations + 1, every)), phase
        assert set(range(every, step + 1, every)) <= set(metric_steps(project, first, metric))


def metric_steps(workdir: Path, run, key: str) -> list[int]:
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    return sorted(m.step for m in client.get_metric_history(run.info.run_id, key))


def test_a_plain_state_dict_pinned_as_a_checkpoint_is_refused_clearly(uninterrupted, tmp_path):
    version = "2026-01-01T00.00.00.000Z"
    target = uninterrupted / "data/06_models/generator_gan.pt" / version / "generator_gan.pt"
    target.parent.mkdir(parents=True)
    torch.save(latest_checkpoint(uninterrupted, "generator_gan")["generator"], target)
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
