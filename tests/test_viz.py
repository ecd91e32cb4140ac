"""kedro-viz: the static site (`kedro viz build`) holds every registered pipeline, node and layer,
with previews of the evaluation outputs; `kedro viz run` serves the same graph over HTTP.

Both run kedro-viz as a user does, in a new process of its own group in a scratch copy of the
project, bounded in time, and never let it reach the network: telemetry is refused, and the
PyPI version check of `kedro viz run` goes to a closed local port (it fails at once and is
ignored) instead of waiting up to 30 s for pypi.org.
"""

from __future__ import annotations

import base64
import io
import json
import os
import random
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import free_port, kedro_project, stop_process_group
from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog
from PIL import Image

BUILD_TIMEOUT_S = 300   # kedro-viz's own limit for a build is 300 s; ~10 s here
START_TIMEOUT_S = 120   # `kedro viz run` answers in ~10 s here
STOP_TIMEOUT_S = 20
EXPECTED_LAYERS = {"train_store": "primary", "generator_pretrained": "models",
                   "evaluation_summary": "reporting"}
SAVE_VERSION = "2026-01-01T00.00.00.000Z"


def _viz_port() -> int:
    """A free port below 49152: kedro-viz refuses the ephemeral range the OS hands out."""
    rng = random.Random()
    for _ in range(100):
        port = rng.randrange(20_000, 49_000)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free TCP port in 20000-49000")


def _viz_env() -> dict[str, str]:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens: proxied requests fail fast
    env = dict(os.environ, DO_NOT_TRACK="1", KEDRO_DISABLE_TELEMETRY="1",
               NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        env[name] = env[name.lower()] = closed
    env.pop("KEDRO_ENV", None)
    return env


def _kedro_viz(workdir: Path, *args: str, log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "kedro", "viz", *args], cwd=workdir,
                                env=_viz_env(),
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _tail(log: Path, chars: int = 4000) -> str:
    return log.read_text(errors="replace")[-chars:] if log.exists() else ""


def _registered():
    from srgan_pipeline.pipeline_registry import register_pipelines

    return register_pipelines()


def _catalog_layers(workdir: Path) -> dict[str, str]:
    catalog = OmegaConfigLoader(str(workdir / "conf"), base_env="base",
                                default_run_env="local")["catalog"]
    return {name: entry["metadata"]["kedro-viz"]["layer"] for name, entry in catalog.items()
            if "layer" in ((entry.get("metadata") or {}).get("kedro-viz") or {})}


def _save_evaluation_outputs(workdir: Path) -> None:
    """One saved version of the evaluation outputs that kedro-viz previews."""
    conf = OmegaConfigLoader(str(workdir / "conf"), base_env="base", default_run_env="local")
    catalog = DataCatalog.from_config(conf["catalog"], save_version=SAVE_VERSION)
    figure = np.zeros((192, 960, 3), np.uint8)
    figure[:, :480] = (255, 0, 0)
    catalog.save("evaluation_comparisons", {"set5/baby": figure, "set5/bird": figure[::-1]})
    catalog.save("evaluation_sr_samples", {"set5/baby/srgan": np.full((256, 256, 3), 90,
                                                                       np.uint8)})
    catalog.save("evaluation_per_image", pd.DataFrame(
        {"set": ["set5"] * 3, "image": ["baby"] * 3, "model": ["bicubic", "srresnet", "srgan"],
         "psnr_y": [31.8, 34.1, 32.9], "lpips": [0.31, 0.22, 0.12]}))
    catalog.save("evaluation_summary", {"set5": {"srgan": {"psnr_y": 32.9, "images": 1}}})
    from srgan_pipeline.evaluation import perception_distortion_figure, perception_distortion_points

    points = perception_distortion_points(
        {"set5": {"bicubic": {"psnr_y": 31.8, "lpips": 0.31, "lpips_weights": "alex/imagenet"},
                  "srgan": {"psnr_y": 32.9, "lpips": 0.12, "lpips_weights": "alex/imagenet"}}})
    catalog.save("evaluation_perception_distortion", perception_distortion_figure(points))
    catalog.save("evaluation_perception_distortion_points", points)


def _check_graph(view: dict, pipeline, layers: dict[str, str], label: str) -> None:
    """Every node and dataset of ``pipeline`` in a viz API view, joined as Kedro joins them."""
    tasks = {n["name"]: n["id"] for n in view["nodes"] if n["type"] == "task"}
    data = {n["name"]: n for n in view["nodes"] if n["type"] in ("data", "parameters")}
    assert set(tasks) == {node.name for node in pipeline.nodes}, label
    assert set(data) == set(pipeline.datasets()), label
    edges = {(edge["source"], edge["target"]) for edge in view["edges"]}
    for node in pipeline.nodes:
        for name in node.inputs:
            assert (data[name]["id"], tasks[node.name]) in edges, (label, name, node.name)
        for name in node.outputs:
            assert (tasks[node.name], data[name]["id"]) in edges, (label, node.name, name)
    for name, node in data.items():
        if node["type"] == "data":  # every dataset sits in its catalog layer
            assert node.get("layer") == layers.get(name), (label, name, node.get("layer"))


def _decode_png(preview: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(preview, validate=True)))
    assert image.format == "PNG"
    return image


def test_kedro_viz_build_holds_every_pipeline_node_and_layer(tmp_path, monkeypatch):
    workdir = kedro_project(tmp_path, monkeypatch)
    pipelines = _registered()
    layers = _catalog_layers(workdir)
    assert {name: layers.get(name) for name in EXPECTED_LAYERS} == EXPECTED_LAYERS
    _save_evaluation_outputs(workdir)

    log = tmp_path / "viz_build.log"
    started = time.monotonic()
    process = _kedro_viz(workdir, "build", "--include-previews", log=log)
    try:
        process.wait(timeout=BUILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"kedro viz build ran over {BUILD_TIMEOUT_S} s:\n{_tail(log)}")
    finally:
        stop_process_group(process, grace_s=STOP_TIMEOUT_S)
    print(f"kedro viz build: {time.monotonic() - started:.1f} s")
    api = workdir / "build" / "api"
    assert process.returncode == 0 and (api / "main").is_file(), _tail(log)
    assert "Success" in log.read_text(errors="replace"), _tail(log)
    assert (workdir / "build" / "index.html").is_file()

    main = json.loads((api / "main").read_text())
    assert {p["id"] for p in main["pipelines"]} == set(pipelines)
    assert main["selected_pipeline"] == "__default__"
    _check_graph(main, pipelines["__default__"], layers, "main")
    for name, pipeline in pipelines.items():
        view = json.loads((api / "pipelines" / name).read_text())
        assert view["selected_pipeline"] == name
        _check_graph(view, pipeline, layers, name)

    # --include-previews: the node details carry kedro-viz previews of the saved outputs
    ids = {n["name"]: n["id"] for n in main["nodes"]}
    details = {name: json.loads((api / "nodes" / ids[name]).read_text())
               for name in ("evaluation_comparisons", "evaluation_sr_samples",
                            "evaluation_per_image", "evaluation_summary",
                            "evaluation_perception_distortion",
                            "evaluation_perception_distortion_points")}
    for name in ("evaluation_comparisons", "evaluation_sr_samples",
                 "evaluation_perception_distortion"):
        assert details[name]["preview_type"] == "ImagePreview", (name, _tail(log))
        image = _decode_png(details[name]["preview"])
        assert max(image.size) <= 512, (name, image.size)
    assert _decode_png(details["evaluation_comparisons"]["preview"]).size == (512, 208)
    table = details["evaluation_per_image"]
    assert table["preview_type"] == "TablePreview"
    assert table["preview"]["columns"] == ["set", "image", "model", "psnr_y", "lpips"]
    assert len(table["preview"]["data"]) == 3
    assert details["evaluation_summary"]["preview_type"] == "JSONPreview"
    assert json.loads(details["evaluation_summary"]["preview"])["set5"]["srgan"]["images"] == 1
    assert details["evaluation_perception_distortion_points"]["preview_type"] == "JSONPreview"
    preview = json.loads(details["evaluation_perception_distortion_points"]["preview"])
    assert [p["label"] for p in preview["sets"]["set5"]["points"]] == ["bicubic", "srgan"]


def _get_json(url: str):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=10) as response:
        assert response.status == 200
        return json.loads(response.read())


def test_kedro_viz_run_serves_the_project_graph(tmp_path, monkeypatch):
    workdir = kedro_project(tmp_path, monkeypatch)
    pipelines = _registered()
    port = _viz_port()
    log = tmp_path / "viz_run.log"
    started = time.monotonic()
    process = _kedro_viz(workdir, "run", "--no-browser", "--host", "127.0.0.1",
                         "--port", str(port), log=log)
    try:
        main = None
        while main is None:
            if process.poll() is not None:
                pytest.fail(f"kedro viz run exited ({process.returncode}):\n{_tail(log)}")
            if time.monotonic() - started > START_TIMEOUT_S:
                pytest.fail(f"kedro viz run did not answer in {START_TIMEOUT_S} s:\n{_tail(log)}")
            # kedro-viz moves to the next port if ours was taken meanwhile: it prints the one
            served = re.search(r"http://127\.0\.0\.1:(\d+)/", _tail(log, 100_000))
            base = f"http://127.0.0.1:{served.group(1) if served else port}"
            try:
                main = _get_json(f"{base}/api/main")
            except (OSError, urllib.error.URLError, json.JSONDecodeError):
                time.sleep(0.5)
        print(f"kedro viz run: answered /api/main after {time.monotonic() - started:.1f} s")

        names = {n["name"] for n in main["nodes"] if n["type"] == "task"}
        assert "pretrain_generator" in names
        assert names == {node.name for node in pipelines["__default__"].nodes}
        assert "evaluation" in {p["id"] for p in main["pipelines"]}
        assert {p["id"] for p in main["pipelines"]} == set(pipelines)
        upscale = _get_json(f"{base}/api/pipelines/upscale")
        assert {n["name"] for n in upscale["nodes"] if n["type"] == "task"} == {
            node.name for node in pipelines["upscale"].nodes}
    finally:
        stop_process_group(process, grace_s=STOP_TIMEOUT_S)
    assert process.returncode is not None
