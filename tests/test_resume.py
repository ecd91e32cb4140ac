"""A phase's in-progress checkpoint as one object (resume.ResumePoint): its lock, the state it
continues from, its writer and the provenance it stamps. The identity itself is tested in
test_run_identity.py, the kill-and-resume commands in pipelines/train_gan/."""

from __future__ import annotations

import errno
import logging

import pytest
import torch
from conftest import conf_parameters
from kedro.io.core import DatasetError
from test_training_store import content

from srgan_pipeline.datasets import TorchCheckpointDataset
from srgan_pipeline.params import validate_params
from srgan_pipeline.resume import ResumeError, ResumePoint
from srgan_pipeline.training_store import TrainingStore, write_store

QUICKSTART = conf_parameters("quickstart")["train_gan"]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> TrainingStore:
    folder = tmp_path_factory.mktemp("store") / "train_store"
    write_store(folder, content())
    return TrainingStore(folder)


def point(store, tmp_path, **changes) -> ResumePoint:
    settings = validate_params("train_gan", QUICKSTART | {"checkpoint_dir": str(tmp_path)}
                               | changes)
    return ResumePoint.of("pretrain", settings, store, scale=store.scale)


def test_a_written_checkpoint_is_resumed_with_its_provenance(store, tmp_path):
    first = point(store, tmp_path, resume=True)
    assert first.path.parent == tmp_path and first.identity["digest"] in first.path.name
    heard = []
    with first.held(on_resumed=heard.append) as start:
        assert start is None  # nothing written yet
        first.writer("run-1")({"phase": "pretrain", "step": 3, "weights": torch.ones(2)})
    assert heard == []
    with point(store, tmp_path, resume=True).held(on_resumed=heard.append) as start:
        assert start["step"] == 3 and torch.equal(start["weights"], torch.ones(2))
        assert start["run_identity"] == first.identity and start["mlflow_run_id"] == "run-1"
    assert heard == ["run-1"]  # which tracking run wrote it, to link the two
    stamped = first.stamped({"step": 4}, "run-2")
    assert stamped == {"step": 4, "run_identity": first.identity, "mlflow_run_id": "run-2"}


def test_resume_false_starts_afresh_and_says_the_file_will_be_overwritten(store, tmp_path,
                                                                            caplog):
    fresh = point(store, tmp_path, resume=False)
    fresh.writer(None)({"phase": "pretrain", "step": 1})
    with caplog.at_level(logging.INFO, logger="srgan_pipeline.resume"):
        with fresh.held() as start:
            assert start is None
    assert "Starting pretrain afresh (train_gan.resume=false)" in caplog.text


def test_a_second_live_run_of_the_same_identity_is_refused(store, tmp_path):
    with point(store, tmp_path).held():
        with pytest.raises(ResumeError, match="another process is training this very run now"):
            with point(store, tmp_path).held():
                pass
    # a machine other than node 0 of a data-parallel run does not take the lock
    with point(store, tmp_path).held():
        other = point(store, tmp_path, distributed=QUICKSTART["distributed"] | {
            "nnodes": 2, "node_rank": 1, "master_port": 29500})
        assert not other.holds_lock
        with other.held():
            pass


def test_a_full_disk_is_named_with_the_step_and_how_to_continue(store, tmp_path, monkeypatch):
    def full(self, data):  # as Kedro raises it: the OSError is the cause of a DatasetError
        raise DatasetError("Failed while saving data") from OSError(errno.ENOSPC,
                                                                     "No space left on device")

    monkeypatch.setattr(TorchCheckpointDataset, "save", full)
    with pytest.raises(OSError, match=r"step 7: the checkpoint was not written: No space left "
                                      r"on device\. Then continue with train_gan.resume=true"):
        point(store, tmp_path).writer(None)({"step": 7})
