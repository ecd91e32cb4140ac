"""The try-it page's event loop stays free while an upload is worked on: decoding, bicubic and
PNG encoding run in worker threads, so /api/models and a second upload are answered meanwhile.

In process (uvicorn in a thread, real HTTP), because "while an upload is being worked on" must
be made certain rather than left to timing: the step under test is held until the other
requests have been answered. Held in the event loop (the bug), it holds them all, and the
test fails when its client gives up (a deadlock breaker, not a speed measure).
"""

from __future__ import annotations

import io
import json
import os
import threading
import time
import urllib.request

import mlflow
import numpy as np
import pytest
import uvicorn
from conftest import REGISTERED_MODEL, free_port
from PIL import Image

from srgan_pipeline.serving import app as page_app

CHAMPION = f"models:/{REGISTERED_MODEL}@champion"
GIVE_UP_S = 60
URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


@pytest.fixture(scope="module")
def page(served_quickstart):
    workdir, _, _ = served_quickstart
    app = page_app.create_app(f"sqlite:///{workdir / 'mlflow.db'}", REGISTERED_MODEL,
                              device="cpu")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(),
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + GIVE_UP_S
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the page did not start"
        time.sleep(0.05)
    saved = {name: os.environ.get(name) for name in URI_VARIABLES}
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(GIVE_UP_S)
        # the page's generator loader sets the URIs process-wide, and MLflow exports them to
        # os.environ, where `kedro run`s of later tests would find them (set_registry_uri(None)
        # leaves MLFLOW_REGISTRY_URI set)
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
        for name, value in saved.items():
            os.environ.pop(name, None)
            if value is not None:
                os.environ[name] = value


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
