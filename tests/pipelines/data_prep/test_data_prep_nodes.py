import numpy as np
import pytest
from conftest import PROJECT_ROOT, conf_parameters, write_image
from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog
from PIL import Image, ImageFile

from srgan_pipeline.imaging import imresize
from srgan_pipeline.pipelines.data_prep.nodes import (
    acquire_sources,
    build_train_store,
    make_eval_pairs,
    normalise_images,
    summarise_data_prep,
)
from srgan_pipeline.training_store import TrainingStore, write_store

MAX_PIXELS = 16_777_216


def manifest_of(folder, name="mine"):
    train, _ = acquire_sources({name: {"path": str(folder)}}, None, "unused", False)
    return train


def test_normalise_keeps_good_images_and_reports_every_skip(image_folder):
    partitions, report = normalise_images(manifest_of(image_folder), scale=4, min_size=64,
                                           max_pixels=MAX_PIXELS)
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
    partitions, report = normalise_images(manifest_of(tmp_path), scale=4, min_size=16,
                                           max_pixels=MAX_PIXELS)
    assert list(partitions) == ["mine/x"]
    assert "same name" in report["mine"]["skipped"][0]["reason"]


def test_names_that_differ_only_in_case_are_a_reported_skip(tmp_path):
    """``A.png`` and ``a.jpg`` would both be written to ``a.png`` on a macOS or Windows disk."""
    write_image(tmp_path / "A.png", seed=1)
    write_image(tmp_path / "a.jpg", seed=2)
    partitions, report = normalise_images(manifest_of(tmp_path), scale=4, min_size=16,
                                          max_pixels=MAX_PIXELS)
    assert list(partitions) == ["mine/A"]
    skip, = report["mine"]["skipped"]
    assert skip["file"].endswith("a.jpg") and "same name" in skip["reason"]


def test_an_image_over_max_pixels_is_a_reported_skip_before_decoding(tmp_path, monkeypatch):
    write_image(tmp_path / "small.png", (100, 100))
    Image.new("RGB", (6000, 6000)).save(tmp_path / "huge.png")
    decode = ImageFile.ImageFile.load

    def load_small_only(image):
        assert image.size[0] <= 100, f"decoded {image.size}"
        return decode(image)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load_small_only)
    partitions, report = normalise_images(manifest_of(tmp_path), scale=4, min_size=16,
                                          max_pixels=1_000_000)
    assert list(partitions) == ["mine/small"]
    skip, = report["mine"]["skipped"]
    assert skip["file"].endswith("huge.png")
    assert "6000x6000" in skip["reason"] and "data_prep.max_pixels=1000000" in skip["reason"]


@pytest.mark.parametrize("value", [0, -5, 1.5, "big", None, True])
def test_max_pixels_is_validated(value):
    with pytest.raises(ValueError, match="data_prep.max_pixels"):
        normalise_images({}, scale=4, min_size=96, max_pixels=value)


@pytest.mark.parametrize("env", ["base", "quickstart", "convergence"])
def test_the_default_max_pixels_takes_the_largest_div2k_image(tmp_path, env):
    limit = conf_parameters(env)["data_prep"]["max_pixels"]
    assert 2040 * 2040 <= limit < 36_000_000


def test_min_size_is_validated():
    with pytest.raises(ValueError, match=r"data_prep.min_size: must be an integer >= scale \(4\)"):
        normalise_images({}, scale=4, min_size=2, max_pixels=MAX_PIXELS)


def test_nothing_selected_is_an_error():
    with pytest.raises(ValueError, match="nothing to do"):
        acquire_sources({"a": {"enabled": False}}, {}, "data/01_raw", False)


def test_invalid_source_stops_before_any_download(tmp_path, server):
    server.files["/a.zip"] = b"never fetched"
    with pytest.raises(ValueError, match="faces"):
        acquire_sources({"div2k": {"url": f"{server.url}/a.zip"}, "faces": {"path": None}},
                        None, str(tmp_path), False)
    assert server.requests == []


def test_store_tiles_are_aligned_hr_lr_pairs_covering_each_image(tmp_path):
    hr = write_image(tmp_path / "img.png", (200, 136))[:136, :200]  # already a multiple of 4
    partitions, report = normalise_images(manifest_of(tmp_path), scale=4, min_size=16,
                                           max_pixels=MAX_PIXELS)
    write_store(tmp_path / "store", build_train_store(partitions, report, 4,
                                                      {"size": 96, "stride": 48}))
    store = TrainingStore(tmp_path / "store")
    assert len(store) == 2 * 4  # rows 0, 40 (flush with the edge); cols 0, 48, 96, 104
    np.testing.assert_array_equal(store.hr_image(0), hr)
    lr_full = imresize(hr, 0.25)
    np.testing.assert_array_equal(store.lr_image(0), lr_full)
    for index in range(len(store)):
        hr_tile, lr_tile = store.tile_pair(index)
        assert hr_tile.shape == (96, 96, 3) and lr_tile.shape == (24, 24, 3)
        # each LR tile is the window of the whole image's LR at the HR tile's place
        matches = [
            (y, x) for y in range(0, 136 - 95) for x in range(0, 200 - 95)
            if y % 4 == 0 and x % 4 == 0 and np.array_equal(hr[y:y + 96, x:x + 96], hr_tile)
        ]
        (y, x), = matches
        np.testing.assert_array_equal(lr_tile, lr_full[y // 4:y // 4 + 24, x // 4:x // 4 + 24])


def test_store_tiling_is_validated_with_its_parameter_name(tmp_path):
    write_image(tmp_path / "img.png", (200, 136))
    partitions, report = normalise_images(manifest_of(tmp_path), scale=4, min_size=16,
                                          max_pixels=MAX_PIXELS)
    with pytest.raises(ValueError, match=r"data_prep.tiles: stride \(100\) is larger"):
        build_train_store(partitions, report, 4, {"size": 96, "stride": 100})


@pytest.mark.parametrize("workers", [0, -1, 1.5, "all", True])
def test_workers_is_validated_with_its_parameter_name(image_folder, workers):
    with pytest.raises(ValueError, match="data_prep.workers must be a positive integer or null"):
        normalise_images(manifest_of(image_folder), scale=4, min_size=64, max_pixels=MAX_PIXELS,
                         workers=workers)


def test_two_workers_keep_and_skip_the_same_images(image_folder):
    one = normalise_images(manifest_of(image_folder), scale=4, min_size=64, max_pixels=MAX_PIXELS,
                           workers=1)
    two = normalise_images(manifest_of(image_folder), scale=4, min_size=64, max_pixels=MAX_PIXELS,
                           workers=2)
    assert one[1] == two[1]  # the report: sizes, skips and reasons, in the same order
    assert list(one[0]) == list(two[0]) and two[0].workers == 2


def test_eval_pairs_follow_the_benchmark_layout():
    hr = np.random.default_rng(0).integers(0, 256, (64, 48, 3), dtype=np.uint8)
    pairs = make_eval_pairs({"urban100/img_001": lambda: hr}, scale=4)
    assert sorted(pairs) == ["urban100/HR/img_001", "urban100/LR_x4/img_001"]
    assert pairs["urban100/LR_x4/img_001"]().shape == (16, 12, 3)


class _TwoTiles:
    def tiles_per_source(self):
        return {"s": 2}


def test_summary_counts_tiles_pairs_and_skips():
    report = {"s": {"folder": "f", "found": 3, "kept": 2, "sizes": {},
                    "skipped": [{"file": "f/x.png", "reason": "corrupt"}]}}
    summary = summarise_data_prep(report, {"e": {**report["s"], "skipped": []}}, _TwoTiles(),
                                  {"e/HR/a": None, "e/LR_x4/a": None})
    assert summary["train"]["s"]["tiles"] == 2
    assert summary["eval"]["e"]["pairs"] == 1
    assert summary["skipped_total"] == 1


def test_hr_images_saved_through_the_catalog_load_back_unchanged(tmp_path, monkeypatch):
    # conf/base saves intermediate images with compress_level 1 for speed: it must stay lossless
    conf = OmegaConfigLoader(str(PROJECT_ROOT / "conf"), base_env="base",
                             default_run_env="local")
    catalog = DataCatalog.from_config(conf["catalog"])
    monkeypatch.chdir(tmp_path)  # the catalog's paths are relative
    write_image(tmp_path / "in" / "img.png", (200, 136))
    partitions, _ = normalise_images(manifest_of(tmp_path / "in"), scale=4, min_size=16,
                                     max_pixels=MAX_PIXELS)
    catalog.save("train_hr_images", partitions)
    loaded = catalog.load("train_hr_images")
    assert sorted(loaded) == sorted(partitions) == ["mine/img"]
    np.testing.assert_array_equal(loaded["mine/img"](), partitions["mine/img"]())


def test_a_train_source_and_an_eval_set_of_one_name_stop_before_any_download(tmp_path, server):
    server.files["/a.zip"] = server.files["/b.zip"] = b"never fetched"
    with pytest.raises(ValueError, match="same name") as error:
        acquire_sources({"set5": {"url": f"{server.url}/a.zip"}},
                        {"Set5": {"url": f"{server.url}/b.zip"}}, str(tmp_path), False)
    assert "data_prep.train_sources.set5" in str(error.value)
    assert "data_prep.eval_sets.Set5" in str(error.value)
    assert server.requests == []
