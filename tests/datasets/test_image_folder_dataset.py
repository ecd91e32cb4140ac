import numpy as np
from kedro.io.core import Version

from srgan_pipeline.datasets import VersionedImageFolderDataset


def images(value):
    return {"urban100/img_001": np.full((4, 6, 3), value, np.uint8),
            "set5/baby": lambda: np.full((2, 2, 3), value + 1, np.uint8)}


def test_each_save_is_a_version_and_old_ones_stay_loadable(tmp_path):
    path = str(tmp_path / "comparisons")
    first, second = "2026-01-01T00.00.00.000Z", "2026-01-02T00.00.00.000Z"
    VersionedImageFolderDataset(filepath=path, version=Version(None, first)).save(images(10))
    VersionedImageFolderDataset(filepath=path, version=Version(None, second)).save(images(20))
    assert (tmp_path / "comparisons" / first / "comparisons" / "urban100" / "img_001.png").exists()

    latest = VersionedImageFolderDataset(filepath=path, version=Version(None, None)).load()
    assert sorted(latest) == ["set5/baby", "urban100/img_001"]
    assert latest["urban100/img_001"]().max() == 20 and latest["set5/baby"]().max() == 21
    old = VersionedImageFolderDataset(filepath=path, version=Version(first, None)).load()
    assert old["urban100/img_001"]().shape == (4, 6, 3) and old["urban100/img_001"]().max() == 10


def test_exists_only_after_a_save(tmp_path):
    path = str(tmp_path / "x")
    assert not VersionedImageFolderDataset(filepath=path, version=Version(None, None)).exists()
    VersionedImageFolderDataset(filepath=path, version=Version(None, "2026-01-01T00.00.00.000Z")
                                ).save(images(1))
    assert VersionedImageFolderDataset(filepath=path, version=Version(None, None)).exists()


def test_a_relative_filepath_loads_too(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    version = "2026-01-01T00.00.00.000Z"
    VersionedImageFolderDataset(filepath="figs", version=Version(None, version)).save(images(5))
    loaded = VersionedImageFolderDataset(filepath="figs", version=Version(None, None)).load()
    assert sorted(loaded) == ["set5/baby", "urban100/img_001"]
