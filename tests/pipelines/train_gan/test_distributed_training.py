"""docs/training.md's data-parallel training as a user types it: `kedro run --pipelines=train_gan`
with `train_gan.distributed.nproc_per_node=2` (2 CPU processes over gloo), on the tiny training.

Killed the two ways it can be: a rank dies (the run fails, naming it), or the `kedro run`
itself is killed under its ranks (they follow it); either way the last checkpoint stays good
and `train_gan.resume=true` continues, under the same or another number of processes.
"""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import checkpoint_versions, copy_project, latest_checkpoint
from test_resumed_training import (
    TINY,
    assert_same_weights,
    kedro,
    mlflow_runs,
    prepared,
    settings,
    succeeded,
    uninterrupted_run,
)

from srgan_pipeline.training_store import TrainingStore

__all__ = ["prepared"]  # test_resumed_training's module fixture, built again for this file

TWO = settings(2)


@pytest.fixture(scope="module")
def uninterrupted(tiny_quickstart, tmp_path_factory) -> Path:
    """The session's two-process run of the tiny training (uninterrupted_run)."""
    return uninterrupted_run(tiny_quickstart, tmp_path_factory, 2)


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
        assert len(checkpoint_versions(uninterrupted, name)) == 1, name
    final = latest_checkpoint(uninterrupted, "generator_pretrained")
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
    (killed_phase_one,) = checkpoint_versions(project, "generator_pretrained")

    log = succeeded(kedro(project, "--pipelines=train_gan", training,
                          f"--params={TWO},train_gan.resume=true"))
    assert "Resuming pretrain from step 6" in log and "Resuming adversarial from step 2" in log
    # Phase 1 was never killed: the killed run's own result must be the uninterrupted one
    # (two-process training is deterministic), and the resume, entering phase 1 at its final
    # step, must hand on exactly that state (no retraining, no other rank's state).
    killed = torch.load(killed_phase_one, weights_only=True)
    assert_same_weights(killed, latest_checkpoint(uninterrupted, "generator_pretrained"))
    assert_same_weights(latest_checkpoint(project, "generator_pretrained"), killed)
    for name in ("generator_pretrained", "generator_gan", "critic"):
        assert_same_weights(latest_checkpoint(project, name),
                            latest_checkpoint(uninterrupted, name))
    first, second = mlflow_runs(project)
    assert first.info.status == "FAILED"
    assert second.data.tags["srgan.resumed_from_run"] == first.info.run_id


def stream(project: Path, first: int, count: int, seed: int = 0) -> list[tuple[int, int]]:
    """Samples ``first`` .. ``first + count - 1`` of phase 1's patch stream as the docs define it
    (one function of the seed and the sample number): (tile index, crop seed) pairs."""
    tiles = len(TrainingStore(project / "data/03_primary/train_store"))
    pairs = []
    for k in range(first, first + count):
        rng = np.random.default_rng([seed, k])
        pairs.append((int(rng.integers(tiles)), int(rng.integers(2**63))))
    return pairs


def served(record: Path) -> dict[int, list[tuple[int, int]]]:
    """What each rank's dataset served, in order (faults/sitecustomize.py's record)."""
    ranks: dict[int, list[tuple[int, int]]] = {}
    for line in record.read_text().splitlines():
        rank, index, seed = (int(field) for field in line.split())
        ranks.setdefault(rank, []).append((index, seed))
    return ranks


def test_a_killed_kedro_run_takes_its_ranks_and_resumes_under_one_process(prepared, tmp_path):
    project = copy_project(prepared, tmp_path / "project")
    phase_one = "--nodes=pretrain_generator"
    killed_record, resumed_record = tmp_path / "killed.txt", tmp_path / "resumed.txt"
    # the kedro run killed right after rank 0's first checkpoint (step 2 of 6)
    killed = kedro(project, "--pipelines=train_gan", phase_one, f"--params={TWO}",
                   kill="after:in_progress/pretrain-:1:parent",
                   env={"SRGAN_RECORD_SAMPLES": str(killed_record)})
    assert killed.returncode == -signal.SIGKILL
    # (kedro's output pipes closed, so its ranks are gone: they wrote nothing after the kill)
    assert in_progress(project, "pretrain")["samples"] == 2 * 2 * 2

    log = succeeded(kedro(project, "--pipelines=train_gan", phase_one,
                          f"--params={TINY},train_gan.resume=true",
                          env={"SRGAN_RECORD_SAMPLES": str(resumed_record)}))
    assert "Resuming pretrain from step 2" in log
    final = latest_checkpoint(project, "generator_pretrained")
    # steps 3-6 in one process: batch 2 each, from sample 8, where the killed run stopped
    assert (final["step"], final["samples"]) == (6, 8 + 4 * 2)
    # ... and what the dataset served says so, not only the loop's counters: global batch 0
    # was samples 0-3, rank r its r-th pair; after the resume, samples 8.. in order
    ranks = served(killed_record)
    assert (ranks[0][:2], ranks[1][:2]) == (stream(project, 0, 2), stream(project, 2, 2))
    assert served(resumed_record)[0][:8] == stream(project, 8, 8)


def test_a_run_killed_in_one_process_resumes_under_two_at_the_sample_it_reached(prepared,
                                                                                tmp_path):
    project = copy_project(prepared, tmp_path / "project")
    phase_one = "--nodes=pretrain_generator"
    killed_record, resumed_record = tmp_path / "killed.txt", tmp_path / "resumed.txt"
    killed = kedro(project, "--pipelines=train_gan", phase_one, f"--params={TINY}",
                   kill="after:in_progress/pretrain-:1",
                   env={"SRGAN_RECORD_SAMPLES": str(killed_record)})
    assert killed.returncode == -signal.SIGKILL
    assert in_progress(project, "pretrain")["samples"] == 2 * 2  # step 2, batch 2

    log = succeeded(kedro(project, "--pipelines=train_gan", phase_one,
                          f"--params={TWO},train_gan.resume=true",
                          env={"SRGAN_RECORD_SAMPLES": str(resumed_record)}))
    assert "Resuming pretrain from step 2" in log
    final = latest_checkpoint(project, "generator_pretrained")
    # steps 3-6 under two processes: a global batch of 2 x 2 each, from sample 4
    assert (final["step"], final["samples"]) == (6, 4 + 4 * 2 * 2)
    assert served(killed_record)[0][:4] == stream(project, 0, 4)
    # global batch g after the resume is samples 4 + 4g .. 4 + 4g + 3; rank r takes its r-th pair
    ranks = served(resumed_record)
    assert ranks[0][:4] == stream(project, 4, 2) + stream(project, 8, 2)
    assert ranks[1][:4] == stream(project, 6, 2) + stream(project, 10, 2)


def test_sync_batchnorm_on_cpu_is_refused_before_any_process_starts(prepared, tmp_path):
    project = copy_project(prepared, tmp_path / "project")  # the run opens an MLflow run
    refused = kedro(project, "--pipelines=train_gan", f"--params={TWO},train_gan.device=cpu,"
                                                        "train_gan.distributed.sync_batchnorm=true")
    assert refused.returncode != 0
    message = " ".join((refused.stdout + refused.stderr).split())
    assert "train_gan.distributed.sync_batchnorm=true needs CUDA" in message
    assert "data-parallel training stopped" not in message  # refused, not started
    assert not (project / "data/06_models/in_progress").exists()
