import numpy as np
import pytest
import yaml
from conftest import PROJECT_ROOT, write_image
from PIL import Image, ImageFile

from srgan_pipeline.imaging import imresize
from srgan_pipeline.pipelines.data_prep.nodes import (
    acquire_sources,
    cut_train_tiles,
    make_eval_pairs,
    normalise_images,
    summarise_data_prep,
)

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
    params = yaml.safe_load((PROJECT_ROOT / "conf" / env / "parameters_data_prep.yml").read_text())
    limit = params["data_prep"]["max_pixels"]
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


def test_tiles_are_aligned_hr_lr_pairs_covering_each_image(tmp_path):
    hr = write_image(tmp_path / "img.png", (200, 136))[:136, :200]  # already a multiple of 4
    partitions, report = normalise_images(manifest_of(tmp_path), scale=4, min_size=16,
                                           max_pixels=MAX_PIXELS)
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


def test_png_tiles_written_by_the_dataset_round_trip(tmp_path):
    # guards the claim that compress_level only trades speed for size
    array = np.random.default_rng(1).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    Image.fromarray(array).save(tmp_path / "t.png", compress_level=1)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "t.png")), array)


def test_a_train_source_and_an_eval_set_of_one_name_stop_before_any_download(tmp_path, server):
    server.files["/a.zip"] = server.files["/b.zip"] = b"never fetched"
    with pytest.raises(ValueError, match="same name") as error:
        acquire_sources({"set5": {"url": f"{server.url}/a.zip"}},
                        {"Set5": {"url": f"{server.url}/b.zip"}}, str(tmp_path), False)
    assert "data_prep.train_sources.set5" in str(error.value)
    assert "data_prep.eval_sets.Set5" in str(error.value)
    assert server.requests == []
