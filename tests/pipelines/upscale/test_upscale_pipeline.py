"""`kedro run --pipeline=upscale` on a folder whose names collide, as a user runs it."""

import json
import shutil

from conftest import kedro_project, kedro_run, write_image
from PIL import Image


def test_every_input_is_upscaled_or_reported_through_kedro_run(tiny_quickstart, tmp_path,
                                                              monkeypatch):
    # A project of its own holding the quickstart's trained generators: this run's outputs
    # and MLflow run stay apart from the tests that read the quickstart project.
    workdir = kedro_project(tmp_path / "project", monkeypatch)
    shutil.copytree(tiny_quickstart[0] / "data" / "06_models", workdir / "data" / "06_models")
    out = workdir / "data" / "07_model_output" / "upscaled"
    inputs = tmp_path / "mine"
    sizes = {"a.jpg": (8, 6), "a.png": (9, 7), "img.bmp": (10, 8), "img.tif": (11, 9),
             "img.webp": (12, 10), "photo.png": (13, 11), "nested/a.png": (14, 12)}
    for seed, (name, size) in enumerate(sizes.items()):
        write_image(inputs / name, size, seed=seed)
    (inputs / "broken.jpg").write_bytes(b"not a jpeg")
    Image.new("RGB", (2100, 2100)).save(inputs / "huge.png")  # 4.4 MP > upscale.max_pixels

    kedro_run(workdir, "--pipeline=upscale", f"--params=upscale.input_dir={inputs}")

    report = json.loads((workdir / "data" / "08_reporting" / "upscale_report.json").read_text())
    expected = {"a.jpg": "a.jpg.png", "a.png": "a.png.png", "img.bmp": "img.bmp.png",
                "img.tif": "img.tif.png", "img.webp": "img.webp.png", "photo.png": "photo.png",
                "nested/a.png": "nested/a.png"}
    assert report["upscaled"] == expected
    skipped = {s["file"]: s["reason"] for s in report["skipped"]}
    assert sorted(skipped) == ["broken.jpg", "huge.png"]
    assert "2100x2100" in skipped["huge.png"] and "upscale.max_pixels" in skipped["huge.png"]
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert written == sorted(expected.values())
    for name, output in expected.items():  # each output is its own input, upscaled x4
        width, height = sizes[name]
        assert Image.open(out / output).size == (4 * width, 4 * height), name
