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
from conftest import (
    built_once,
    copy_project,
    data_prep_copy,
    kedro_project,
    latest_checkpoint,
    tiny_training,
)
from conftest import kedro as run_kedro

FAULTS = Path(__file__).parent / "faults"
TINY = tiny_training({"pretrain.iterations": 6, "pretrain.log_every": 2,
                     "pretrain.checkpoint_every": 2, "adversarial.iterations": 4,
                     "adversarial.log_every": 1, "adversarial.checkpoint_every": 2})


def settings(processes: int) -> str:
    """TINY in ``processes`` training processes (1: the single-process path, the default)."""
    return f"{TINY},train_gan.distributed.nproc_per_node={processes}"


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
def prepared(tiny_quickstart, tmp_path_factory) -> Path:
    """A project after the quickstart's data_prep (the session's quickstart project without its
    models and MLflow runs): the training data every test starts from."""
    return data_prep_copy(tiny_quickstart[0], tmp_path_factory.mktemp("prepared"))


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


def uninterrupted_run(tiny_quickstart, tmp_path_factory, processes: int = 1) -> Path:
    """The tiny training end to end in ``processes`` processes, never killed: the weights every
    resume must reach. Built once for the session (conftest.built_once): this file,
    test_signals.py, test_disk_full.py and test_distributed_training.py compare with the same
    two runs, which their tests only read.

    The two-process run also records the ports its processes listen on while rank 0 writes
    its first checkpoint, in LISTENING (faults/sitecustomize.py; test_signals.py's loopback
    test): recording reads /proc and changes nothing the run computes.
    """
    def build(workdir: Path) -> str:
        data_prep_copy(tiny_quickstart[0], workdir)
        params = settings(processes)
        if processes == 1:
            return succeeded(kedro(workdir, "--pipelines=train_gan", f"--params={params}"))
        return succeeded(kedro(workdir, "--pipelines=train_gan", f"--params={params}",
                               kill="after:in_progress/pretrain-:1:sockets",
                               env={"SRGAN_SOCKETS": str(workdir / LISTENING)}))

    return built_once(tmp_path_factory, f"uninterrupted{processes}", build)[0]


LISTENING = "listening.txt"  # in the two-process uninterrupted_run's folder


@pytest.fixture(scope="module")
def uninterrupted(tiny_quickstart, tmp_path_factory) -> Path:
    return uninterrupted_run(tiny_quickstart, tmp_path_factory)


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
    project = copy_project(uninterrupted, tmp_path / "project")  # the session's run, unchanged
    version = "2026-01-01T00.00.00.000Z"
    target = project / "data/06_models/generator_gan.pt" / version / "generator_gan.pt"
    target.parent.mkdir(parents=True)
    torch.save(latest_checkpoint(project, "generator_gan")["generator"], target)
    inputs = tmp_path / "in"
    shutil.copytree(project / "data/05_model_input/eval/skimage_heldout/LR_x4", inputs)
    done = kedro(project, "--pipelines=upscale", f"--params=upscale.input_dir={inputs}",
                 f"--load-versions=generator_gan:{version}")
    assert done.returncode != 0
    message = done.stdout + done.stderr
    assert "is a plain state dict" in message and "not a generator checkpoint" in message
    assert "KeyError" not in message
