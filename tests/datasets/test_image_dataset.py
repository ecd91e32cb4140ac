import os
import stat

import numpy as np
import pytest
from kedro.io.core import Version
from PIL import Image

from srgan_pipeline.datasets import RGBImageDataset
from srgan_pipeline.datasets.image_dataset import write_bytes_atomic


def test_round_trip_is_lossless_and_rgb(tmp_path):
    array = np.random.default_rng(0).integers(0, 256, (17, 23, 3), dtype=np.uint8)
    dataset = RGBImageDataset(filepath=str(tmp_path / "x.png"), save_args={"compress_level": 1})
    dataset.save(array)
    loaded = dataset.load()
    assert loaded.dtype == np.uint8 and loaded.shape == (17, 23, 3)
    np.testing.assert_array_equal(loaded, array)


def test_load_converts_other_modes_to_rgb(tmp_path):
    Image.new("L", (5, 4), 77).save(tmp_path / "gray.png")
    loaded = RGBImageDataset(filepath=str(tmp_path / "gray.png")).load()
    assert loaded.shape == (4, 5, 3) and (loaded == 77).all()


def test_failed_save_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "out.png"
    dataset = RGBImageDataset(filepath=str(target))
    dataset.save(np.zeros((4, 4, 3), np.uint8))
    before = target.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("srgan_pipeline.datasets.image_dataset.os.replace", crash)
    with pytest.raises(Exception, match="disk full"):
        dataset.save(np.full((4, 4, 3), 255, np.uint8))
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_versioned_saves_keep_every_version(tmp_path):
    path = str(tmp_path / "figure.png")
    first = RGBImageDataset(filepath=path, version=Version(None, "2026-01-01T00.00.00.000Z"))
    second = RGBImageDataset(filepath=path, version=Version(None, "2026-01-02T00.00.00.000Z"))
    first.save(np.zeros((2, 2, 3), np.uint8))
    second.save(np.full((2, 2, 3), 9, np.uint8))
    assert RGBImageDataset(filepath=path, version=Version(None, None)).load().max() == 9
    old = RGBImageDataset(filepath=path, version=Version("2026-01-01T00.00.00.000Z", None))
    assert old.load().max() == 0


@pytest.fixture
def umask():
    """Sets the process umask for one test, then restores it."""
    old = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(old)


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_saved_files_follow_the_umask(tmp_path, umask, mask, mode):
    umask(mask)
    RGBImageDataset(filepath=str(tmp_path / "x.png")).save(np.zeros((2, 2, 3), np.uint8))
    write_bytes_atomic(tmp_path / "sub" / "y.bin", b"123")
    open(tmp_path / "plain", "wb").close()
    assert stat.S_IMODE((tmp_path / "plain").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "x.png").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "sub" / "y.bin").stat().st_mode) == mode
