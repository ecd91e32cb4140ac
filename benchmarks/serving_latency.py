"""Latency of one 256x256 LR image: REST (`mlflow models serve`) vs `kedro run --pipelines=upscale`.

Both with the same default generator (64 channels, 16 blocks, x4; random weights: the figure is
about time, and time does not depend on the weights), in a scratch project under a temp folder:

  * rest     docs/serving.md's server (`mlflow models serve -m models:/...@champion --env-manager
             local`) on 127.0.0.1; its start-up is timed separately, then one cold request
             (the first: lazy initialisation) and --repeats warm ones, measured by a client
             that sends the base64 PNG as JSON and decodes the PNG answer, as docs/serving.md's
             client does.
  * kedro    `kedro run --env=quickstart --pipelines=upscale` on a folder with the one image:
             the wall time of the whole command a user types (start-up included), --repeats.
  * inference  `upscale_image` on the same image in this process (median of --repeats): what
             both spend on the model itself.

    python benchmarks/serving_latency.py      # ~1.5 min on 2 CPU cores
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import torch
from PIL import Image

from srgan_pipeline.checkpoints import (
    build_generator,
    describe_generator,
    generator_from_checkpoint,
)
from srgan_pipeline.inference import DEFAULT_TILE, plan_inference
from srgan_pipeline.serving.model import log_generator_model
from srgan_pipeline.serving.registry import register_version

ROOT = Path(__file__).resolve().parents[1]
MODEL = "srgan_pipeline_generator"
ENV = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true",
       "KEDRO_DISABLE_TELEMETRY": "1"}


def scratch_project(folder: Path, checkpoint: dict) -> None:
    shutil.copytree(ROOT / "conf", folder / "conf", ignore=shutil.ignore_patterns("local"))
    (folder / "conf" / "local").mkdir()
    (folder / "src").mkdir()
    for name in ("pyproject.toml", ".telemetry"):
        shutil.copy(ROOT / name, folder / name)
    version = "2026-01-01T00.00.00.000Z"
    path = folder / "data/06_models/generator_gan.pt" / version / "generator_gan.pt"
    path.parent.mkdir(parents=True)
    torch.save(checkpoint, path)
    mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
    mlflow.set_experiment("srgan_pipeline")
    with mlflow.start_run(run_name="benchmark"):
        uri, digest = log_generator_model(checkpoint, kind="srgan")
    client = mlflow.MlflowClient()
    version = register_version(client, MODEL, uri, {"weights_sha256": digest, "model": "srgan"})
    client.set_registered_model_alias(MODEL, "champion", version.version)
    mlflow.set_tracking_uri(None)


def rest_request(url: str, png: bytes) -> Image.Image:
    body = json.dumps({"dataframe_split": {"columns": ["image"],
                                           "data": [[base64.b64encode(png).decode()]]}})
    request = urllib.request.Request(f"{url}/invocations", data=body.encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=300) as response:
        answer = json.loads(response.read())
    image = Image.open(io.BytesIO(base64.b64decode(answer["predictions"][0]["image"])))
    image.load()
    return image


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    generator = build_generator({})  # the paper's default: 64 channels, 16 blocks
    checkpoint = {"generator_config": describe_generator(generator),
                  "generator": generator.state_dict(), "phase": "adversarial", "step": 0}
    rng = np.random.default_rng(0)
    lr = Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    lr.save(buffer, format="PNG")
    png = buffer.getvalue()

    # as the served model prepares it (serving.model.SuperResolutionModel)
    model = plan_inference("cpu", "fp32", DEFAULT_TILE).prepare(
        generator_from_checkpoint(checkpoint))
    times = []
    for _ in range(args.repeats + 1):
        start = time.perf_counter()
        model.upscale_image(lr)
        times.append(time.perf_counter() - start)
    print(f"inference in process: {statistics.median(times[1:]):.2f} s (median of "
          f"{args.repeats}, torch threads {torch.get_num_threads()})", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "project"
        scratch_project(project, checkpoint)
        inputs = project / "inputs"
        inputs.mkdir()
        (inputs / "lr.png").write_bytes(png)

        kedro = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            subprocess.run(["kedro", "run", "--env=quickstart", "--pipelines=upscale",
                            f"--params=upscale.input_dir={inputs}"], cwd=project, env=ENV,
                           check=True, capture_output=True)
            kedro.append(time.perf_counter() - start)
        out = Image.open(project / "data/07_model_output/upscaled/lr.png")
        assert out.size == (1024, 1024), out.size
        print(f"kedro run --pipelines=upscale, 1 image: {statistics.median(kedro):.2f} s "
              f"(median of {args.repeats}: {', '.join(f'{t:.2f}' for t in kedro)})", flush=True)

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        start = time.perf_counter()
        server = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{MODEL}@champion",
             "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)],
            cwd=project, env={**ENV, "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}"},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/ping", timeout=2):
                        break
                except OSError:
                    if server.poll() is not None:
                        raise SystemExit("mlflow models serve exited") from None
                    time.sleep(0.2)
            print(f"mlflow models serve start-up (until /ping answers): "
                  f"{time.perf_counter() - start:.1f} s", flush=True)
            rest = []
            for _ in range(args.repeats + 1):
                start = time.perf_counter()
                assert rest_request(url, png).size == (1024, 1024)
                rest.append(time.perf_counter() - start)
            print(f"REST request, 256x256 -> 1024x1024 PNG: cold {rest[0]:.2f} s, warm "
                  f"{statistics.median(rest[1:]):.2f} s (median of {args.repeats}: "
                  f"{', '.join(f'{t:.2f}' for t in rest[1:])})", flush=True)
        finally:
            os.killpg(server.pid, 15)
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
