import os
import stat

import pytest
import torch
from kedro.io.core import DatasetError, Version

from srgan_pipeline.datasets import TorchCheckpointDataset


def state():
    return {"phase": "pretrain", "step": 7, "generator": {"w": torch.arange(6.0).reshape(2, 3)},
            "config": {"lr": 1e-4, "betas": [0.9, 0.999]}, "stopped_because": "iterations"}


def test_round_trip(tmp_path):
    dataset = TorchCheckpointDataset(filepath=str(tmp_path / "g.pt"))
    assert not dataset.exists()
    dataset.save(state())
    loaded = dataset.load()()
    assert loaded["step"] == 7 and loaded["config"]["betas"] == [0.9, 0.999]
    torch.testing.assert_close(loaded["generator"]["w"], state()["generator"]["w"])


def test_versions_are_kept_and_loadable(tmp_path):
    path = str(tmp_path / "g.pt")
    for version, step in (("2026-01-01T00.00.00.000Z", 1), ("2026-01-02T00.00.00.000Z", 2)):
        TorchCheckpointDataset(filepath=path, version=Version(None, version)).save(
            {**state(), "step": step})
    assert TorchCheckpointDataset(filepath=path, version=Version(None, None)).load()()["step"] == 2
    old = TorchCheckpointDataset(filepath=path, version=Version("2026-01-01T00.00.00.000Z", None))
    assert old.load()()["step"] == 1


class NotAState:
    """Any class: weights_only loading must refuse to unpickle it."""


def test_arbitrary_pickles_are_refused(tmp_path):
    torch.save({"x": NotAState()}, tmp_path / "evil.pt")
    with pytest.raises(DatasetError, match="not a checkpoint this project wrote"):
        TorchCheckpointDataset(filepath=str(tmp_path / "evil.pt")).load()()


def test_interrupted_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    dataset = TorchCheckpointDataset(filepath=str(tmp_path / "g.pt"))
    dataset.save(state())

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("srgan_pipeline.datasets.image_dataset.os.replace", crash)
    with pytest.raises(KeyboardInterrupt):
        dataset.save({**state(), "step": 8})
    assert dataset.load()()["step"] == 7
    assert [p.name for p in tmp_path.iterdir()] == ["g.pt"]


def test_loading_nothing_fails_only_when_the_checkpoint_is_read(tmp_path):
    dataset = TorchCheckpointDataset(filepath=str(tmp_path / "g.pt"), version=Version(None, None))
    read = dataset.load()  # a node may take the input and never read it
    with pytest.raises(DatasetError, match="No checkpoint at .*kedro run --pipeline=train_gan"):
        read()


def test_saved_checkpoints_follow_the_umask(tmp_path):
    old = os.umask(0o002)
    try:
        TorchCheckpointDataset(filepath=str(tmp_path / "g.pt")).save(state())
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "g.pt").stat().st_mode) == 0o664
