"""`kedro run --pipeline=upscale` on a folder whose names collide, as a user runs it."""

import json
import os
import shutil

import pytest
import yaml
from conftest import (
    kedro,
    kedro_project,
    kedro_run,
    kedro_run_fails,
    offline_env,
    optional_extra,
    write_image,
)
from PIL import Image

from srgan_pipeline.sources import NOT_AN_IMAGE

# Legal on Linux (255 bytes a name): the atomic write's temporary name once made it 263.
LONG = "é" * 122 + "x.png"  # 249 bytes, cut mid-character by the temporary name's limit
CROWDED = "c" * 248  # .jpg and .png of it: whole-name outputs of 256 bytes cannot exist


def test_every_input_is_upscaled_or_reported_through_kedro_run(tiny_quickstart, tmp_path,
                                                              monkeypatch):
    # A project of its own holding the quickstart's trained generators: this run's outputs
    # and MLflow run stay apart from the tests that read the quickstart project. Its folder
    # and the input folder have a space, a comma and non-ASCII letters; --params splits at
    # commas, so the input folder comes in a --config file, as docs/configuration.md says.
    workdir = kedro_project(tmp_path / "projet été, v2", monkeypatch)
    shutil.copytree(tiny_quickstart[0] / "data" / "06_models", workdir / "data" / "06_models")
    out = workdir / "data" / "07_model_output" / "upscaled"
    inputs = tmp_path / "mes photos, 2024 ☀"
    sizes = {"a.jpg": (8, 6), "a.png": (9, 7), "img.bmp": (10, 8), "img.tif": (11, 9),
             "img.webp": (12, 10), "photo.png": (13, 11), "nested/a.png": (14, 12),
             LONG: (7, 5)}
    for seed, (name, size) in enumerate(sizes.items()):
        write_image(inputs / name, size, seed=seed)
    (inputs / "broken.jpg").write_bytes(b"not a jpeg")
    Image.new("RGB", (2100, 2100)).save(inputs / "huge.png")  # 4.4 MP > upscale.max_pixels
    write_image(inputs / "holiday.gif", (6, 6))  # real images of types upscale does not read
    (inputs / "IMG_0001.HEIC").write_bytes(b"\0\0\0\x18ftypheic")
    (inputs / "notes.txt").write_text("not an image")
    write_image(inputs / f"{CROWDED}.jpg", (5, 5))
    write_image(inputs / f"{CROWDED}.png", (5, 5))
    config = tmp_path / "run.yml"
    config.write_text(yaml.safe_dump({"run": {"pipeline": "upscale",
                                              "params": {"upscale": {"input_dir": str(inputs)}}}},
                                     allow_unicode=True))

    kedro_run(workdir, f"--config={config}")

    report = json.loads((workdir / "data" / "08_reporting" / "upscale_report.json").read_text())
    expected = {"a.jpg": "a.jpg.png", "a.png": "a.png.png", "img.bmp": "img.bmp.png",
                "img.tif": "img.tif.png", "img.webp": "img.webp.png", "photo.png": "photo.png",
                "nested/a.png": "nested/a.png", LONG: LONG}
    assert report["input_dir"] == str(inputs)
    assert report["upscaled"] == expected
    skipped = {s["file"]: s["reason"] for s in report["skipped"]}
    assert sorted(skipped) == sorted(["broken.jpg", "huge.png", "holiday.gif", "IMG_0001.HEIC",
                                      "notes.txt", f"{CROWDED}.jpg", f"{CROWDED}.png"])
    assert "2100x2100" in skipped["huge.png"] and "upscale.max_pixels" in skipped["huge.png"]
    for name in ("holiday.gif", "IMG_0001.HEIC", "notes.txt"):
        assert skipped[name] == NOT_AN_IMAGE, name
    assert "256 bytes" in skipped[f"{CROWDED}.png"]
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert written == sorted(expected.values())
    for name, output in expected.items():  # each output is its own input, upscaled x4
        width, height = sizes[name]
        assert Image.open(out / output).size == (4 * width, 4 * height), name
    assert not [p for p in out.rglob(".*")]  # no temporary file left behind


def test_runtime_openvino_through_kedro_run_is_offline(tiny_quickstart, tmp_path, monkeypatch):
    """docs/serving.md's upscale command with runtime=openvino: outputs and report as with torch,
    and OpenVINO's usage telemetry stays off (no CI variables, no opt-out file in HOME: offline by
    construction, every network attempt recorded)."""
    optional_extra("openvino", "openvino")
    workdir = kedro_project(tmp_path / "project", monkeypatch)
    shutil.copytree(tiny_quickstart[0] / "data" / "06_models", workdir / "data" / "06_models")
    inputs = tmp_path / "mine"
    write_image(inputs / "a.png", (20, 14))
    write_image(inputs / "b.png", (9, 11), seed=1)
    env, log = offline_env(tmp_path / "offline")
    home = tmp_path / "home"
    home.mkdir()
    kedro_run(workdir, "--pipeline=upscale",
              f"--params=upscale.input_dir={inputs},upscale.runtime=openvino",
              env={**env, "HOME": str(home)}, quiet=False)
    report = json.loads((workdir / "data" / "08_reporting" / "upscale_report.json").read_text())
    assert report["runtime"] == "openvino" and report["upscaled"] == {"a.png": "a.png",
                                                                       "b.png": "b.png"}
    out = workdir / "data" / "07_model_output" / "upscaled"
    assert Image.open(out / "a.png").size == (80, 56)
    assert Image.open(out / "b.png").size == (36, 44)
    assert log.read_text() == ""
    assert not (home / "intel").exists()


def test_runtime_openvino_without_the_package_names_the_extra(tmp_path, monkeypatch):
    """Where OpenVINO is not installed (a sitecustomize.py hides it if it is), the run stops
    before any work, even before a checkpoint is looked for (this project has none)."""
    workdir = kedro_project(tmp_path / "project", monkeypatch)
    write_image(tmp_path / "mine" / "a.png", (12, 10))
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text("import sys\nsys.modules['openvino'] = None\n")
    path = os.pathsep.join(p for p in (str(hide), os.environ.get("PYTHONPATH")) if p)
    done = kedro(workdir, "run", "--env=quickstart", "--pipeline=upscale",
                 f"--params=upscale.input_dir={tmp_path / 'mine'},upscale.runtime=openvino",
                 env={"PYTHONPATH": path, "COLUMNS": "200"})
    output = " ".join((done.stdout + done.stderr).split())
    assert done.returncode != 0
    assert ('upscale.runtime=openvino needs the OpenVINO package, which is not installed: '
            'pip install -e ".[openvino]"') in output
    assert not (workdir / "data" / "07_model_output").exists()


@pytest.mark.parametrize("input_dir", ["data/07_model_output/upscaled", "data/07_model_output"])
def test_input_folder_overlapping_the_output_folder_is_refused(tiny_quickstart, tmp_path,
                                                              monkeypatch, input_dir):
    """Equal to or holding the output folder: outputs keep the inputs' names, so they would
    overwrite them (rc 0 before) or be upscaled again next time. Refused before work."""
    workdir = kedro_project(tmp_path / "project", monkeypatch)
    shutil.copytree(tiny_quickstart[0] / "data" / "06_models", workdir / "data" / "06_models")
    photo = workdir / input_dir / "photo.png"
    write_image(photo, (8, 6))
    before = photo.read_bytes()
    output = kedro_run_fails(workdir, "--pipeline=upscale",
                             f"--params=upscale.input_dir={input_dir}")
    assert "Invalid parameters (nothing was run)" in output
    assert "upscale.input_dir: folder" in output and "overlaps the output folder" in output
    assert photo.read_bytes() == before
    assert sorted(p.name for p in (workdir / "data").rglob("*.png")) == ["photo.png"]
