"""upscale_folder on folders whose file names collide once the suffix is dropped."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest
import torch
from conftest import conf_parameters, optional_extra, write_image
from PIL import Image

from srgan_pipeline import devices
from srgan_pipeline.models import Generator
from srgan_pipeline.pipelines.upscale import nodes


@pytest.fixture
def tiny_generator(monkeypatch):
    torch.manual_seed(0)
    generator = Generator(scale=4, channels=8, num_blocks=1).eval()
    monkeypatch.setattr(nodes, "generator_from_checkpoint", lambda state: generator)


def run(folder, **settings):
    params = {"input_dir": str(folder), "model": "srgan", "device": "cpu", "precision": "fp32",
              "tile": {"fp32": 64, "bf16": 64}, "runtime": "torch", "max_pixels": 4_194_304,
              **settings}
    return nodes.upscale_folder(dict, dict, params)


def accounted_for(report):
    """Every input file named once: upscaled (input -> output) or skipped."""
    return sorted([*report["upscaled"], *(s["file"] for s in report["skipped"])])


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (["a.jpg", "a.png"], {"a.jpg": "a.jpg", "a.png": "a.png"}),
        (["img.bmp", "img.tif", "img.webp", "other.png"],
         {"img.bmp": "img.bmp", "img.tif": "img.tif", "img.webp": "img.webp",
          "other.png": "other"}),
        # a full-name output of one file is the stem output of another
        (["a.jpg", "a.png", "a.jpg.png"],
         {"a.jpg": "a.jpg", "a.png": "a.png", "a.jpg.png": "a.jpg.png"}),
        # names that differ only in letter case are one file on macOS and Windows disks
        (["A.jpg", "a.png", "b.png"], {"A.jpg": "A.jpg", "a.png": "a.png", "b.png": "b"}),
        # on a case-sensitive disk: two files, two outputs
        (["A.png", "a.PNG"], {"A.png": "A.png", "a.PNG": "a.PNG"}),
        (["x/a.png", "x/a.jpg", "y/a.png", "x.png"],
         {"x/a.png": "x/a.png", "x/a.jpg": "x/a.jpg", "y/a.png": "y/a", "x.png": "x"}),
    ],
)
def test_every_input_gets_its_own_output(tmp_path, tiny_generator, files, expected):
    folder = tmp_path / "in"
    for seed, name in enumerate(files):
        write_image(folder / name, (12, 10), seed=seed)
    outputs, report = run(folder)
    assert report["upscaled"] == {name: f"{key}.png" for name, key in expected.items()}
    assert sorted(outputs) == sorted(expected.values())
    assert len(set(report["upscaled"].values())) == len(files)
    assert report["skipped"] == []


def test_a_file_name_that_is_also_a_folder_name_is_not_overwritten(tmp_path, tiny_generator):
    folder = tmp_path / "in"
    write_image(folder / "a.jpg", (12, 10))           # would be a.png ...
    write_image(folder / "a.png" / "b.png", (12, 10))  # ... which is a folder of outputs too
    outputs, report = run(folder)
    assert accounted_for(report) == ["a.jpg", "a.png/b.png"]
    files = {f"{key}.png".casefold() for key in outputs}
    folders = {parent.casefold() for key in outputs for parent in _parents(key)}
    assert not files & folders


def _parents(key):
    parts = key.split("/")[:-1]
    return ["/".join(parts[: i + 1]) + "" for i in range(len(parts))]


def test_outputs_are_the_upscaled_inputs(tmp_path, tiny_generator):
    folder = tmp_path / "in"
    write_image(folder / "a.png", (12, 10), seed=1)
    write_image(folder / "a.jpg", (8, 6), seed=2)
    outputs, _ = run(folder)
    assert outputs["a.png"]().size == (48, 40)
    assert outputs["a.jpg"]().size == (32, 24)


@pytest.mark.parametrize(("bf16_units", "expected"), [(False, "fp32"), (True, "bf16")])
def test_auto_precision_follows_the_bf16_units_and_is_reported(tmp_path, tiny_generator,
                                                               monkeypatch, bf16_units, expected):
    folder = tmp_path / "in"
    write_image(folder / "a.png", (12, 10), seed=1)
    monkeypatch.setattr(devices, "bf16_verdict",
                        lambda device: devices.Bf16Verdict(bf16_units, "as the test says"))
    outputs, report = run(folder, precision="auto")
    assert report["precision"] == expected
    fp32 = np.asarray(run(folder, precision="fp32")[0]["a"]())
    out = np.asarray(outputs["a"]())
    if expected == "fp32":
        assert np.array_equal(out, fp32)
    else:  # bf16 weights: close to fp32, not equal
        difference = np.abs(out.astype(int) - fp32)
        assert 0 < difference.max() <= 16 and difference.mean() < 2


def test_an_image_over_max_pixels_is_a_reported_skip(tmp_path, tiny_generator):
    folder = tmp_path / "in"
    write_image(folder / "small.png", (10, 10))
    write_image(folder / "big.png", (30, 20))
    outputs, report = run(folder, max_pixels=500)
    assert list(outputs) == ["small"]
    skip, = report["skipped"]
    assert skip["file"] == "big.png"
    assert "30x20" in skip["reason"] and "upscale.max_pixels=500" in skip["reason"]


@pytest.mark.parametrize("value", [0, -1, 2.5, "many", True])
def test_max_pixels_is_validated(tmp_path, tiny_generator, value):
    write_image(tmp_path / "a.png", (10, 10))
    with pytest.raises(ValueError, match="upscale.max_pixels"):
        run(tmp_path, max_pixels=value)


@pytest.mark.parametrize("env", ["base", "quickstart"])
def test_the_default_max_pixels_lets_a_2000_px_square_through(tmp_path, tiny_generator, env):
    limit = conf_parameters(env)["upscale"]["max_pixels"]
    Image.new("RGB", (2000, 2000)).save(tmp_path / "lr.png")
    Image.new("RGB", (4000, 4000)).save(tmp_path / "huge.png")  # 16 MP: 256 MP out
    outputs, report = run(tmp_path, max_pixels=limit)
    assert list(outputs) == ["lr"] and [s["file"] for s in report["skipped"]] == ["huge.png"]


def _unread_checkpoint():
    raise AssertionError("a checkpoint was read")


def test_runtime_openvino_without_the_package_fails_before_reading_a_checkpoint(tmp_path,
                                                                               monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` -> ImportError
    write_image(tmp_path / "a.png", (12, 10))
    params = {"input_dir": str(tmp_path), "model": "srgan", "device": "cpu", "precision": "fp32",
              "tile": {"fp32": 64, "bf16": 64}, "runtime": "openvino", "max_pixels": 4_194_304}
    with pytest.raises(ImportError, match=re.escape(
            'upscale.runtime=openvino needs the OpenVINO package, which is not installed: '
            'pip install -e ".[openvino]"')):
        nodes.upscale_folder(_unread_checkpoint, _unread_checkpoint, params)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_runtime_openvino_is_reported_and_close_to_torch(tmp_path, tiny_generator, monkeypatch,
                                                         precision):
    optional_extra("openvino", "openvino")
    tags = {}
    monkeypatch.setattr(nodes, "_record", tags.update)  # the tags it sets on an MLflow run
    write_image(tmp_path / "a.png", (20, 14), seed=2)
    outputs, report = run(tmp_path, runtime="openvino", precision=precision)
    assert report["runtime"] == tags["upscale.runtime"] == "openvino"
    # what ran: OpenVINO runs fp32 on a CPU without bf16 units
    ran = "bf16" if precision == "bf16" and devices.cpu_has_fast_bf16() else "fp32"
    assert report["precision"] == tags["upscale.precision"] == ran
    torch_fp32 = np.asarray(run(tmp_path)[0]["a"]())
    difference = np.abs(np.asarray(outputs["a"]()).astype(int) - torch_fp32)
    # fp32: the same function summed in another order; bf16: the bound of torch's own bf16
    assert difference.max() <= (1 if precision == "fp32" else 16)


def test_the_precision_tagged_and_reported_is_the_one_that_ran(tmp_path, tiny_generator,
                                                               monkeypatch, openvino_runs_fp32):
    """bf16 asked of OpenVINO on a CPU where it runs fp32: the tag and the report say fp32;
    the tile is bf16's, the one asked for."""
    tags = {}
    monkeypatch.setattr(nodes, "_record", tags.update)  # the tags it sets on an MLflow run
    write_image(tmp_path / "a.png", (12, 10), seed=2)
    outputs, report = run(tmp_path, runtime="openvino", precision="bf16",
                          tile={"fp32": 8, "bf16": 16})
    assert tags == {"upscale.precision": "fp32", "upscale.tile": 16, "upscale.runtime": "openvino",
                    "upscale.precision_reason": "upscale.precision=bf16, as set"}
    assert (report["precision"], report["runtime"]) == ("fp32", "openvino")
    assert outputs["a"]().size == (48, 40)
