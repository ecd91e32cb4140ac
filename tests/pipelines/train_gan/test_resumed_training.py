"""docs/training.md's recovery recipe as a user types it: `kedro run` killed with SIGKILL at a file
write, then the same command with `train_gan.resume=true`; and runs that never mix.

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
from conftest import QUIET_ENV, kedro_project, latest_checkpoint, tiny_training, write_image
from conftest import kedro as run_kedro
from filelock import FileLock

from srgan_pipeline import tracking

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
        assert_same_weights(latest_checkpoint(project, name), latest_checkpoint(reference, name))


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
    checkpoint = latest_checkpoint(project, "generator_pretrained")
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


def test_a_resume_on_other_pixels_of_the_same_names_and_sizes_does_not_continue(tmp_path,
                                                                              monkeypatch):
    """The store's identity is its pixels: bytes changed in hr.npy after data_prep refuse the
    resume naming the file, and data_prep re-run on other images of the same names and sizes
    makes another run, named in the warning; the killed run's checkpoint is never touched."""
    photos = tmp_path / "photos"
    project = kedro_project(tmp_path / "project", monkeypatch)
    # data_prep.workers=1: a pool worker would outlive the killed run and hold its output open
    source = ("data_prep.workers=1,data_prep.train_sources.skimage_photos.enabled=false,"
              f"data_prep.train_sources.mine.path={photos}")
    wide = {"COLUMNS": "1000"}  # one log record, one line: its words are not split by the path

    def photographs(seed: int) -> None:
        for number in range(2):
            write_image(photos / f"photo{number}.png", (192, 192), seed=seed + number)

    photographs(seed=0)
    killed = kedro(project, "--to-nodes=pretrain_generator", f"--params={TINY},{source}",
                   kill="after:in_progress/pretrain-:1")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    (checkpoint,) = (project / "data/06_models/in_progress").glob("pretrain-*.pt")
    saved = checkpoint.read_bytes()
    named = checkpoint.relative_to(project)  # as checkpoint_dir is: relative to the project

    hr = project / "data/03_primary/train_store/hr.npy"
    with open(hr, "r+b") as file:  # 2 kB flipped in the middle: same size, same index
        file.seek(hr.stat().st_size // 2)
        middle = file.read(2048)
        file.seek(hr.stat().st_size // 2)
        file.write(bytes(b ^ 0xFF for b in middle))
    refused = kedro(project, "--nodes=pretrain_generator",
                    f"--params={TINY},{source},train_gan.resume=true", env=wide)
    message = " ".join((refused.stdout + refused.stderr).split())
    assert refused.returncode != 0, message[-3000:]
    assert f"not resuming {named}" in message and f"{hr}:" in message
    assert "are not the ones data_prep wrote" in message and "re-run data_prep" in message
    assert checkpoint.read_bytes() == saved

    photographs(seed=10)  # other pixels, same names and sizes; data_prep then training
    log = " ".join(succeeded(kedro(project, "--to-nodes=pretrain_generator",
                                   f"--params={TINY},{source},train_gan.resume=true",
                                   env=wide)).split())
    assert "Resuming pretrain" not in log
    assert f"Not resuming from {named}: it belongs to another run (data: the training " \
           "store holds other pixels (data_prep was re-run on other images; re-run it on the " \
           "images that run trained on to continue it)" in log
    assert checkpoint.read_bytes() == saved
