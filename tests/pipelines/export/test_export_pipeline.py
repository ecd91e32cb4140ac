"""`kedro run --pipelines=export` after the quickstart, as docs/export.md says to run it."""

import json
import re
import subprocess
import sys

import pytest
from conftest import (
    REGISTERED_MODEL,
    child_env,
    copy_project,
    documentation,
    kedro,
    optional_extra,
    registry_client,
    write_image,
)
from PIL import Image

from srgan_pipeline.exports import TOLERANCE
from srgan_pipeline.serving.model import slim_checkpoint, weights_digest

FILES = ["srgan_pipeline-srgan-x4.bin", "srgan_pipeline-srgan-x4.param",
         "srgan_pipeline-srgan.model_card.json", "srgan_pipeline-srgan.onnx",
         "srgan_pipeline-srgan.safetensors"]


@pytest.fixture(scope="module")
def exported(tiny_quickstart, tmp_path_factory):
    for module in ("onnxruntime", "onnxscript", "safetensors", "pnnx", "ncnn"):
        optional_extra(module, "export")
    workdir = copy_project(tiny_quickstart[0], tmp_path_factory.mktemp("export"))
    done = kedro(workdir, "run", "--pipelines=export")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return workdir, json.loads((workdir / "data/08_reporting/export_report.json").read_text())


def test_every_format_is_written_checked_and_reported(exported):
    workdir, report = exported
    folder = workdir / "data/07_model_output/exports"
    assert sorted(p.name for p in folder.iterdir()) == FILES
    assert set(report["formats"]) == {"safetensors", "onnx", "ncnn"}
    assert all(entry["max_grey_level_diff"] <= TOLERANCE for entry in report["formats"].values())


def test_the_card_names_what_train_gan_trained_on(exported):
    workdir, _ = exported
    card = json.loads((workdir / "data/07_model_output/exports"
                       / "srgan_pipeline-srgan.model_card.json").read_text())
    assert [entry["source"] for entry in card["training_data"]] == ["skimage_photos"]
    assert card["phase"] == "adversarial" and card["scale"] == 4


def test_exports_are_run_artifacts_and_the_registered_version_points_at_them(exported):
    from conftest import scored_checkpoint

    workdir, report = exported
    uri = report["mlflow"]["artifacts"]
    client = registry_client(workdir)
    run_id = uri.removeprefix("runs:/").split("/")[0]
    logged = sorted(a.path for a in client.list_artifacts(run_id, "exports"))
    assert logged == [f"exports/{name}" for name in FILES]
    digest = weights_digest(slim_checkpoint(scored_checkpoint(workdir, "srgan")))
    versions = [v for v in client.search_model_versions(f"name = '{REGISTERED_MODEL}'")
                if v.tags.get("weights_sha256") == digest]
    assert versions and all(v.tags["exports"] == uri for v in versions)
    assert report["mlflow"]["registered_versions"] == [int(v.version) for v in versions]


def test_the_onnxruntime_script_of_the_docs_runs_as_written(exported):
    workdir, _ = exported
    section = documentation("export.md").split("## onnxruntime", 1)[1]
    script = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    write_image(workdir / "photo.png", (10, 7))
    done = subprocess.run([sys.executable, "-c", script], cwd=workdir, env=child_env(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert Image.open(workdir / "photo_x4.png").size == (40, 28)
