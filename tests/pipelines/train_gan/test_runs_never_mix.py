"""Runs that never mix, through `kedro run` as a user types it: a resume never continues a
checkpoint of other pretrained weights or of other pixels under the same names and sizes, and
two runs at once each log their own checkpoints and never share a live run.

(Apart from test_resumed_training.py, whose helpers and module fixtures these tests share, so
that the two files run on two pytest-xdist workers.)
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import mlflow
import torch
from conftest import QUIET_ENV, kedro_project, latest_checkpoint, write_image
from filelock import FileLock
from test_resumed_training import (
    TINY,
    assert_same_weights,
    kedro,
    mlflow_runs,
    prepared,
    project,
    succeeded,
)

from srgan_pipeline import tracking

__all__ = ["prepared", "project"]  # fixtures, built again for this file


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
