"""README's data-parallel training as a user types it: `kedro run --pipelines=train_gan` with
`train_gan.distributed.nproc_per_node=2` (2 CPU processes over gloo), on the tiny training.

Killed the two ways it can be: a rank dies (the run fails, naming it), or the `kedro run`
itself is killed under its ranks (they follow it); either way the last checkpoint stays good
and `train_gan.resume=true` continues, under the same or another number of processes.
"""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

import pytest
import torch
from conftest import copy_project
from test_resume import TINY, assert_same_weights, kedro, latest, mlflow_runs, succeeded

TWO = f"{TINY},train_gan.distributed.nproc_per_node=2"


@pytest.fixture(scope="module")
def prepared(tiny_quickstart, tmp_path_factory) -> Path:
    """The session's quickstart project without its models and MLflow runs: its data_prep."""
    workdir = copy_project(tiny_quickstart[0], tmp_path_factory.mktemp("prepared_two"))
    shutil.rmtree(workdir / "data" / "06_models")
    shutil.rmtree(workdir / "mlruns", ignore_errors=True)
    (workdir / "mlflow.db").unlink(missing_ok=True)
    return workdir


@pytest.fixture(scope="module")
def uninterrupted(prepared, tmp_path_factory) -> Path:
    workdir = copy_project(prepared, tmp_path_factory.mktemp("uninterrupted_two"))
    succeeded(kedro(workdir, "--pipelines=train_gan", f"--params={TWO}"))
    return workdir


def versions(workdir: Path, name: str) -> list[Path]:
    return sorted((workdir / "data" / "06_models" / f"{name}.pt").glob(f"*/{name}.pt"))


def in_progress(workdir: Path, phase: str) -> dict:
    (path,) = (workdir / "data/06_models/in_progress").glob(f"{phase}-*.pt")
    return torch.load(path, weights_only=True)


def test_two_processes_make_one_mlflow_run_and_one_checkpoint_per_phase(uninterrupted):
    (run,) = mlflow_runs(uninterrupted)
    assert run.info.status == "FINISHED"
    assert run.data.tags["pretrain.world_size"] == "2"
    assert run.data.tags["adversarial.global_batch_size"] == "4"  # 2 per process x 2
    client_metrics = run.data.metrics
    assert {"pretrain/pixel", "gan/adversarial", "critic/gradient_penalty"} <= set(client_metrics)
    for name in ("generator_pretrained", "generator_gan", "critic"):
        assert len(versions(uninterrupted, name)) == 1, name
    final = latest(uninterrupted, "generator_pretrained")
    assert (final["step"], final["batches"], final["samples"]) == (6, 6, 6 * 2 * 2)
    assert final["mlflow_run_id"] == run.info.run_id
    assert len(final["rng"]["ranks"]) == 2


def test_a_dying_rank_fails_the_run_and_the_resume_reaches_the_uninterrupted_weights(
        prepared, uninterrupted, tmp_path):
    project = copy_project(prepared, tmp_path / "project")
    training = "--nodes=pretrain_generator,train_adversarial"  # not the MLflow models' node
    # rank 0 killed inside phase 2's second checkpoint write (the final one). A rank left
    # waiting on its dead peer would hang for gloo's 30-minute timeout: kedro()'s 10-minute
    # limit catches that, where a bound in seconds failed on a loaded 2-core machine (283 s).
    failed = kedro(project, "--pipelines=train_gan", training, f"--params={TWO}",
                   kill="before:in_progress/adversarial-:2")
    assert failed.returncode not in (0, -signal.SIGKILL)  # kedro reports it, not killed itself
    message = " ".join((failed.stdout + failed.stderr).split())
    assert "data-parallel training stopped: rank 0 failed: Signal 9 (SIGKILL)" in message
    assert in_progress(project, "adversarial")["step"] == 2  # the last good checkpoint
    (killed_phase_one,) = versions(project, "generator_pretrained")

    log = succeeded(kedro(project, "--pipelines=train_gan", training,
                          f"--params={TWO},train_gan.resume=true"))
    assert "Resuming pretrain from step 6" in log and "Resuming adversarial from step 2" in log
    # Phase 1 was never killed: the killed run's own result must be the uninterrupted one
    # (two-process training is deterministic), and the resume, entering phase 1 at its final
    # step, must hand on exactly that state (no retraining, no other rank's state).
    killed = torch.load(killed_phase_one, weights_only=True)
    assert_same_weights(killed, latest(uninterrupted, "generator_pretrained"))
    assert_same_weights(latest(project, "generator_pretrained"), killed)
    for name in ("generator_pretrained", "generator_gan", "critic"):
        assert_same_weights(latest(project, name), latest(uninterrupted, name))
    first, second = mlflow_runs(project)
    assert first.info.status == "FAILED"
    assert second.data.tags["srgan.resumed_from_run"] == first.info.run_id


def test_a_killed_kedro_run_takes_its_ranks_and_resumes_under_one_process(prepared, tmp_path):
    project = copy_project(prepared, tmp_path / "project")
    phase_one = "--nodes=pretrain_generator"
    # the kedro run killed right after rank 0's first checkpoint (step 2 of 6)
    killed = kedro(project, "--pipelines=train_gan", phase_one, f"--params={TWO}",
                   kill="after:in_progress/pretrain-:1:parent")
    assert killed.returncode == -signal.SIGKILL
    # (kedro's output pipes closed, so its ranks are gone: they wrote nothing after the kill)
    assert in_progress(project, "pretrain")["samples"] == 2 * 2 * 2

    log = succeeded(kedro(project, "--pipelines=train_gan", phase_one,
                          f"--params={TINY},train_gan.resume=true"))
    assert "Resuming pretrain from step 2" in log
    final = latest(project, "generator_pretrained")
    # steps 3-6 in one process: batch 2 each, from sample 8, where the killed run stopped
    assert (final["step"], final["samples"]) == (6, 8 + 4 * 2)


def test_sync_batchnorm_on_cpu_is_refused_before_any_process_starts(prepared, tmp_path):
    project = copy_project(prepared, tmp_path / "project")  # the run opens an MLflow run
    refused = kedro(project, "--pipelines=train_gan", f"--params={TWO},train_gan.device=cpu,"
                                                        "train_gan.distributed.sync_batchnorm=true")
    assert refused.returncode != 0
    message = " ".join((refused.stdout + refused.stderr).split())
    assert "train_gan.distributed.sync_batchnorm=true needs CUDA" in message
    assert "data-parallel training stopped" not in message  # refused, not started
    assert not (project / "data/06_models/in_progress").exists()
