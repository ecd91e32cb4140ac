"""The disk refuses a write, through `kedro run` as a user types it: a full disk at a
checkpoint (a real tmpfs, a real ENOSPC) is a clear error that loses nothing and resumes once
space is freed, and output folders that cannot be written are refused before training starts.

(Apart from test_signals.py, whose module fixtures these tests share, so that the two files run
on two pytest-xdist workers.)
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import torch
from conftest import copy_project, latest_checkpoint, remount, tmpfs
from test_resumed_training import assert_same_weights, kedro, succeeded
from test_signals import PHASE_ONE, in_progress, kedro_job, prepared, settings, uninterrupted

__all__ = ["prepared", "uninterrupted"]  # module fixtures (prepared: copied again for this file)


def test_a_full_disk_at_a_checkpoint_is_a_clear_error_and_resumes_once_space_is_freed(
        prepared, uninterrupted, tmp_path):
    """A real ENOSPC: the checkpoint folder on a tmpfs with room for one tiny checkpoint
    (0.16 MB) but not for the next beside it (an atomic write keeps the old one until the
    rename)."""
    project = copy_project(prepared, tmp_path / "project")
    folder = project / "data/06_models/in_progress"
    with tmpfs(folder, "256k"):
        full = kedro(project, "--pipelines=train_gan", PHASE_ONE, f"--params={settings(1)}")
        output = " ".join((full.stdout + full.stderr).split())
        assert full.returncode == 1, output[-3000:]
        assert "step 4: the checkpoint was not written: no space left on the disk of" in output
        assert "continue with train_gan.resume=true" in output
        path = in_progress(project)
        assert torch.load(path, weights_only=True)["step"] == 2  # the previous one, intact
        assert sorted(p.name for p in folder.iterdir()) == [path.name, f"{path.name}.lock"]

        remount(folder, "4m")  # space freed
        log = succeeded(kedro(project, "--pipelines=train_gan", PHASE_ONE,
                              f"--params={settings(1)},train_gan.resume=true"))
    assert "Resuming pretrain from step 2" in log
    assert_same_weights(latest_checkpoint(project, "generator_pretrained"), uninterrupted(1))


def test_an_unwritable_output_folder_is_refused_before_training_starts(prepared, tmp_path):
    """Only the final model's folder is read-only (a real read-only mount: root writes through
    permission bits): the run used to train, then fail at the save."""
    project = copy_project(prepared, tmp_path / "project")
    folder = project / "data/06_models/generator_pretrained.pt"
    with tmpfs(folder, "64k", read_only=True):
        refused = kedro_job(project, "--pipelines=train_gan", PHASE_ONE,
                            f"--params={settings(1)}")
    output = " ".join((refused.stdout + refused.stderr).split())
    assert refused.returncode == 1, output[-3000:]
    assert "Output folders that cannot be written (nothing was run)" in output
    assert f"{folder} (generator_pretrained): Read-only file system" in output
    assert not (project / "data/06_models/in_progress").exists()  # no training started
    assert not mlflow_runs_or_none(project)  # refused before kedro-mlflow opened a run


def mlflow_runs_or_none(workdir: Path) -> list:
    """The project's MLflow runs; none where it has no tracking store or experiment yet."""
    if not (workdir / "mlflow.db").exists():
        return []
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("srgan_pipeline")
    return client.search_runs([experiment.experiment_id]) if experiment else []


