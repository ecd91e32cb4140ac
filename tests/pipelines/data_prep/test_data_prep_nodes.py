import numpy as np
import pytest
from conftest import PROJECT_ROOT, write_image
from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog

from srgan_pipeline.imaging import imresize
from srgan_pipeline.pipelines.data_prep.nodes import (
    acquire_sources,
    cut_train_tiles,
    make_eval_pairs,
    normalise_images,
    summarise_data_prep,
)


def manifest_of(folder, name="mine"):
    train, _ = acquire_sources({name: {"path": str(folder)}}, None, "unused", False)
    return train


def test_normalise_keeps_good_images_and_reports_every_skip(image_folder):
    partitions, report = normalise_images(manifest_of(image_folder), scale=4, min_size=64)
    assert sorted(partitions) == ["mine/a", "mine/c", "mine/nested/b"]
    entry = report["mine"]
    assert (entry["found"], entry["kept"]) == (5, 3)
    reasons = {s["file"].rsplit("/", 1)[1]: s["reason"] for s in entry["skipped"]}
    assert "smaller than data_prep.min_size=64" in reasons["tiny.png"]
    assert "broken.png" in reasons["broken.png"]  # the decode error names the file
    a = partitions["mine/a"]()
    assert a.shape == (100, 128, 3) and a.dtype == np.uint8  # 130x101 mod-cropped to 128x100
    c = partitions["mine/c"]()
    assert c.shape == (100, 96, 3)  # grayscale became RGB
    assert entry["sizes"]["mine/a"] == [100, 128]


def test_same_name_with_two_suffixes_is_a_reported_skip(tmp_path):
    write_image(tmp_path / "x.png")
    write_image(tmp_path / "x.jpg")
    partitions, report = normalise_images(manifest_of(tmp_path), scale=4, min_size=16)
    assert list(partitions) == ["mine/x"]
    assert "same name" in report["mine"]["skipped"][0]["reason"]


def test_min_size_is_validated():
    with pytest.raises(ValueError, match="data_prep.min_size"):
        normalise_images({}, scale=4, min_size=2)


def test_nothing_selected_is_an_error():
    with pytest.raises(ValueError, match="nothing to do"):
        acquire_sources({"a": {"enabled": False}}, {}, "data/01_raw", False)


def test_invalid_source_stops_before_any_download(tmp_path, server):
    server.files["/a.zip"] = b"never fetched"
    with pytest.raises(ValueError, match="faces"):
        acquire_sources({"div2k": {"url": f"{server.url}/a.zip"}, "faces": {"path": None}},
                        None, str(tmp_path), False)
    assert server.requests == []


def test_tiles_are_aligned_hr_lr_pairs_covering_each_image(tmp_path):
    hr = write_image(tmp_path / "img.png", (200, 136))[:136, :200]  # already a multiple of 4
    partitions, report = normalise_images(manifest_of(tmp_path), scale=4, min_size=16)
    hr_tiles, lr_tiles = cut_train_tiles(partitions, report, 4, {"size": 96, "stride": 48})
    assert sorted(hr_tiles) == sorted(lr_tiles)
    assert len(hr_tiles) == 2 * 4  # rows 0, 40 (flush with the edge); cols 0, 48, 96, 104
    lr_full = imresize(hr, 0.25)
    for key in hr_tiles:
        hr_tile, lr_tile = hr_tiles[key](), lr_tiles[key]()
        assert hr_tile.shape == (96, 96, 3) and lr_tile.shape == (24, 24, 3)
        # each LR tile is the window of the whole image's LR at the HR tile's place
        matches = [
            (y, x) for y in range(0, 136 - 95) for x in range(0, 200 - 95)
            if y % 4 == 0 and x % 4 == 0 and np.array_equal(hr[y:y + 96, x:x + 96], hr_tile)
        ]
        (y, x), = matches
        np.testing.assert_array_equal(lr_tile, lr_full[y // 4:y // 4 + 24, x // 4:x // 4 + 24])


def test_eval_pairs_follow_the_benchmark_layout():
    hr = np.random.default_rng(0).integers(0, 256, (64, 48, 3), dtype=np.uint8)
    pairs = make_eval_pairs({"urban100/img_001": lambda: hr}, scale=4)
    assert sorted(pairs) == ["urban100/HR/img_001", "urban100/LR_x4/img_001"]
    assert pairs["urban100/LR_x4/img_001"]().shape == (16, 12, 3)


def test_summary_counts_tiles_pairs_and_skips():
    report = {"s": {"folder": "f", "found": 3, "kept": 2, "sizes": {},
                    "skipped": [{"file": "f/x.png", "reason": "corrupt"}]}}
    summary = summarise_data_prep(report, {"e": {**report["s"], "skipped": []}},
                                  {"s/a_s001": None, "s/a_s002": None},
                                  {"e/HR/a": None, "e/LR_x4/a": None})
    assert summary["train"]["s"]["tiles"] == 2
    assert summary["eval"]["e"]["pairs"] == 1
    assert summary["skipped_total"] == 1


def test_tiles_saved_through_the_catalog_load_back_unchanged(tmp_path, monkeypatch):
    # conf/base saves tiles with compress_level 1 for speed: it must stay lossless
    conf = OmegaConfigLoader(str(PROJECT_ROOT / "conf"), base_env="base",
                             default_run_env="local")
    catalog = DataCatalog.from_config(conf["catalog"])
    monkeypatch.chdir(tmp_path)  # the catalog's paths are relative
    write_image(tmp_path / "in" / "img.png", (200, 136))
    partitions, report = normalise_images(manifest_of(tmp_path / "in"), scale=4, min_size=16)
    hr_tiles, lr_tiles = cut_train_tiles(partitions, report, 4, {"size": 96, "stride": 48})
    for name, tiles in (("train_hr_tiles", hr_tiles), ("train_lr_tiles", lr_tiles)):
        catalog.save(name, tiles)
        loaded = catalog.load(name)
        assert sorted(loaded) == sorted(tiles)
        for key, tile in tiles.items():
            np.testing.assert_array_equal(loaded[key](), tile(), err_msg=f"{name} {key}")
