"""`kedro run --pipelines=upscale` with `upscale.model=models:/...@champion`, as docs/serving.md
shows."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import QUIET_ENV, kedro_run
from PIL import Image

from srgan_pipeline.checkpoints import generator_from_checkpoint
from srgan_pipeline.devices import resolve_precision
from srgan_pipeline.inference import upscale_image

CHAMPION = "models:/srgan_pipeline_generator@champion"


@pytest.fixture(scope="module")
def project(served_quickstart, tmp_path_factory):
    """A copy of the tiny quickstart project with @champion set: upscale runs add MLflow runs
    to its store, which the tests that share the original count."""
    workdir = tmp_path_factory.mktemp("upscale_registered") / "project"
    shutil.copytree(served_quickstart[0], workdir)
    return workdir


def test_upscale_loads_the_champion_from_the_registry(project, monkeypatch):
    kedro_run(project, "--pipelines=upscale", f"--params=upscale.model={CHAMPION}")
    out = project / "data" / "07_model_output" / "upscaled" / "chelsea.png"
    lr = project / "data" / "05_model_input" / "eval" / "skimage_heldout" / "LR_x4" / "chelsea.png"
    # the same pixels as the champion's weights through the pipeline's inference in process
    import mlflow

    from srgan_pipeline.serving.registry import load_model_checkpoint

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project / 'mlflow.db'}")
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    try:
        state = load_model_checkpoint(CHAMPION)
    finally:
        mlflow.set_tracking_uri(None)
    # in the precision the run chose: the quickstart's upscale.precision is auto
    precision = resolve_precision("auto", torch.device("cpu"))
    expected = upscale_image(generator_from_checkpoint(state), Image.open(lr), precision=precision)
    with Image.open(out) as result:
        assert result.size == (4 * Image.open(lr).width, 4 * Image.open(lr).height)
        assert np.array_equal(np.asarray(result), np.asarray(expected))


def test_an_alias_that_is_not_set_stops_with_a_clear_error(project):
    done = subprocess.run([sys.executable, "-m", "kedro", "run", "--env=quickstart",
                           "--pipelines=upscale",
                           "--params=upscale.model=models:/srgan_pipeline_generator@nobody"],
                          cwd=project,
                          env={**os.environ, **QUIET_ENV}, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode != 0
    message = " ".join((done.stdout + done.stderr).split())
    assert "cannot load the model models:/srgan_pipeline_generator@nobody" in message
    assert "Registered model alias nobody not found" in message
