"""`srgan-pipeline upscale INPUT OUTPUT` as a user types it: the upscale node without a session."""

import json
import shlex
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import child_env, documentation, kedro_project, write_image
from PIL import Image

from srgan_pipeline.checkpoints import generator_from_checkpoint
from srgan_pipeline.inference import plan_inference
from srgan_pipeline.models import Generator

VERSION = "2026-12-03T10.00.00.000Z"
# docs/serving.md's two commands, as typed there: a folder, then one file with options
FOLDER, ONE_FILE = (shlex.split(line.split("#")[0]) for line in
                    documentation("serving.md").splitlines()
                    if line.startswith("srgan-pipeline upscale"))


def srgan_pipeline(workdir, *args):
    command = shutil.which("srgan-pipeline") or pytest.fail("srgan-pipeline is not installed")
    args = args[1:] if args[0] == "srgan-pipeline" else args
    return subprocess.run([command, *args], cwd=workdir, env=child_env(), capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A project with tiny trained generators, a photo and a folder of good and bad inputs."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        workdir = kedro_project(tmp_path_factory.mktemp("command"), monkeypatch)
    torch.manual_seed(0)
    states = {}
    for name, phase in (("generator_gan", "adversarial"), ("generator_pretrained", "pretrain")):
        generator = Generator(channels=8, num_blocks=1)
        state = {"generator_config": {"scale": 4, "channels": 8, "num_blocks": 1,
                                      "input_skip": False},
                 "generator": generator.state_dict(), "phase": phase, "step": 1}
        path = workdir / f"data/06_models/{name}.pt" / VERSION / f"{name}.pt"
        path.parent.mkdir(parents=True)
        torch.save(state, path)
        states[name] = state
    photos = workdir / "photos"
    write_image(workdir / "photo.jpg", (10, 6), seed=3)
    write_image(photos / "a.png", (12, 8), seed=1)
    write_image(photos / "trip" / "b.jpg", (9, 7), seed=2)
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    (photos / "notes.txt").write_text("not an image")
    return workdir, states["generator_pretrained"]  # srresnet's, the one-file command's


def test_a_folder_with_bad_files_upscales_the_rest_and_exits_non_zero(project):
    workdir, _ = project
    out = workdir / FOLDER[-1]
    done = srgan_pipeline(workdir, *FOLDER)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "2 upscaled, 2 skipped" in done.stdout
    assert "Skipped broken.jpg: cannot read image" in done.stderr
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "a.png", "trip", "trip/b.png"]
    report = json.loads((workdir / "data/08_reporting/upscale_report.json").read_text())
    assert report["upscaled"] == {"a.png": "a.png", "trip/b.jpg": "trip/b.png"}
    assert sorted(s["file"] for s in report["skipped"]) == ["broken.jpg", "notes.txt"]
    assert Image.open(out / "a.png").size == (48, 32)


def test_one_file_with_options_gives_the_pipelines_pixels_and_exits_zero(project):
    workdir, state = project
    assert ONE_FILE[-6:] == ["--model", "srresnet", "--precision", "fp32", "--tile", "128"]
    done = srgan_pipeline(workdir, *ONE_FILE)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 upscaled, 0 skipped" in done.stdout and "srresnet, fp32" in done.stdout
    # the pixels of the pipeline's own upscaler, with the same settings
    upscaler = plan_inference("auto", "fp32", 128).prepare(generator_from_checkpoint(state))
    with Image.open(workdir / ONE_FILE[2]) as image:
        expected = np.asarray(upscaler.upscale_image(image))
    assert np.array_equal(np.asarray(Image.open(workdir / ONE_FILE[3])), expected)


@pytest.mark.parametrize(("args", "message"), [
    (["nowhere", "out"], "error: INPUT nowhere does not exist"),
    (["photos", "out", "--precision", "fp16"],
     "error: upscale.precision: must be 'auto', 'fp32' or 'bf16', got 'fp16'"),
])
def test_bad_arguments_exit_2_naming_what_to_fix(project, args, message):
    done = srgan_pipeline(project[0], "upscale", *args)
    assert done.returncode == 2 and message in done.stderr, done.stderr


def test_help_answers_without_importing_torch():
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "srgan_pipeline",
                           "upscale", "--help"], env=child_env(), capture_output=True, text=True)
    assert done.returncode == 0 and "an image file, or a folder" in done.stdout
    assert " torch\n" not in done.stderr and " kedro\n" not in done.stderr
