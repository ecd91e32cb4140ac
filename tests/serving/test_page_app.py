"""The try-it page in process: its bicubic and SR at the served model's scale (a x2 model on a
scratch store), and an event loop that stays free while an upload is worked on: decoding,
bicubic and PNG encoding run in worker threads, so /api/models and a second upload are
answered meanwhile.

In process (uvicorn in a thread, real HTTP), because "while an upload is being worked on" must
be made certain rather than left to timing: the step under test is held until the other
requests have been answered. Held in the event loop (the bug), it holds them all, and the
test fails when its client gives up (a deadlock breaker, not a speed measure).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import threading
import time
import urllib.error
import urllib.request

import mlflow
import numpy as np
import pytest
import torch
import uvicorn
from conftest import REGISTERED_MODEL, free_port
from PIL import Image

from srgan_pipeline.checkpoints import (
    build_generator,
    describe_generator,
    generator_from_checkpoint,
)
from srgan_pipeline.imaging import imresize, to_rgb_array
from srgan_pipeline.inference import upscale_image
from srgan_pipeline.serving import app as page_app
from srgan_pipeline.serving.model import log_generator_model
from srgan_pipeline.serving.registry import register_version

CHAMPION = f"models:/{REGISTERED_MODEL}@champion"
GIVE_UP_S = 60
URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


@contextlib.contextmanager
def _serving(app):
    """``app`` on a free port of 127.0.0.1 (uvicorn in a thread) while inside: its URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(),
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + GIVE_UP_S
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the page did not start"
        time.sleep(0.05)
    try:
        with _mlflow_uris_restored():
            yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(GIVE_UP_S)


@contextlib.contextmanager
def _mlflow_uris_restored():
    """MLflow's tracking and registry URIs as they were, once outside: the page's generator
    loader sets them process-wide, and MLflow exports them to os.environ, where `kedro run`s of
    later tests would find them (set_registry_uri(None) leaves MLFLOW_REGISTRY_URI set)."""
    saved = {name: os.environ.get(name) for name in URI_VARIABLES}
    try:
        yield
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
        for name, value in saved.items():
            os.environ.pop(name, None)
            if value is not None:
                os.environ[name] = value


@pytest.fixture(scope="module")
def page(served_quickstart):
    workdir, _, _ = served_quickstart
    with _serving(page_app.create_app(f"sqlite:///{workdir / 'mlflow.db'}", REGISTERED_MODEL,
                                      device="cpu")) as url:
        yield url


@pytest.fixture(scope="module")
def x2_page(tmp_path_factory):
    """The page on a scratch store whose one registered version is a tiny x2 generator:
    (url, the generator)."""
    store = tmp_path_factory.mktemp("x2_store")
    uri = f"sqlite:///{store / 'mlflow.db'}"
    torch.manual_seed(0)
    generator = build_generator({"scale": 2, "channels": 8, "num_blocks": 1}).eval()
    state = {"generator_config": describe_generator(generator),
             "generator": generator.state_dict(), "phase": "pretrain", "step": 1}
    with _mlflow_uris_restored():  # registered in this store, whatever an earlier test set
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        experiment = mlflow.create_experiment("x2", artifact_location=str(store / "mlruns"))
        with mlflow.start_run(experiment_id=experiment):
            model_uri, digest = log_generator_model(state, model="srresnet")
        register_version(mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri),
                         REGISTERED_MODEL, model_uri, {"weights_sha256": digest})
    with _serving(page_app.create_app(uri, REGISTERED_MODEL, device="cpu")) as url:
        yield url, generator_from_checkpoint(state)


def _png(size, seed=0) -> bytes:
    array = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _post(url: str, body: bytes, query: str) -> tuple[int, bytes]:
    request = urllib.request.Request(f"{url}/api/upscale?{query}", data=body, method="POST")
    with urllib.request.urlopen(request, timeout=GIVE_UP_S) as response:
        return response.status, response.read()


@pytest.mark.parametrize("step, query", [
    ("open_request_image", f"model={CHAMPION}"),  # decoding the upload
    ("imresize", f"model={CHAMPION}&method=bicubic"),  # MATLAB bicubic
    ("png_bytes", f"model={CHAMPION}"),           # encoding the result
])
def test_a_held_upload_stalls_no_other_request(page, monkeypatch, step, query):
    held, release = threading.Event(), threading.Event()
    original, calls = getattr(page_app, step), []

    def first_call_held(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            held.set()
            release.wait(GIVE_UP_S)
        return original(*args, **kwargs)

    monkeypatch.setattr(page_app, step, first_call_held)
    first: dict = {}
    worker = threading.Thread(target=lambda: first.update(answer=_post(page, _png((10, 6)),
                                                                       query)))
    worker.start()
    try:
        assert held.wait(GIVE_UP_S), f"the upload never reached {step}"
        with urllib.request.urlopen(f"{page}/api/models", timeout=GIVE_UP_S) as response:
            models = json.loads(response.read())
        assert models["uploads_in_progress"] == 1 and models["choices"]
        status, data = _post(page, _png((7, 5), seed=1), query)  # a second upload, served
        assert status == 200 and Image.open(io.BytesIO(data)).size == (28, 20)
    finally:
        release.set()
        worker.join(GIVE_UP_S)
    status, data = first["answer"]
    assert status == 200 and Image.open(io.BytesIO(data)).size == (40, 24)


def test_bicubic_and_the_model_share_the_served_models_scale(x2_page):
    """A x2 model: its SR and the bicubic it is compared with are both x2 (MATLAB bicubic,
    as the evaluation's), and both answers say so; bicubic needs the model it is compared with."""
    url, generator = x2_page
    data = _png((10, 6), seed=3)
    image = Image.open(io.BytesIO(data))
    version = f"model=models:/{REGISTERED_MODEL}/1"
    request = urllib.request.Request(f"{url}/api/upscale?{version}&method=bicubic", data=data,
                                     method="POST")
    with urllib.request.urlopen(request, timeout=GIVE_UP_S) as response:
        assert response.headers["X-Scale"] == "2" and response.headers["X-Image-Size"] == "20x12"
        bicubic = np.asarray(Image.open(io.BytesIO(response.read())))
    assert np.array_equal(bicubic, imresize(to_rgb_array(image), 2))
    request = urllib.request.Request(f"{url}/api/upscale?{version}", data=data, method="POST")
    with urllib.request.urlopen(request, timeout=GIVE_UP_S) as response:
        assert response.headers["X-Scale"] == "2" and response.headers["X-Model-Version"] == "1"
        sr = np.asarray(Image.open(io.BytesIO(response.read())))
    assert np.array_equal(sr, np.asarray(upscale_image(generator, image)))
    with pytest.raises(urllib.error.HTTPError) as refused:
        _post(url, data, "method=bicubic")
    assert refused.value.code == 400
    assert "model must be models:/" in json.loads(refused.value.read())["detail"]
