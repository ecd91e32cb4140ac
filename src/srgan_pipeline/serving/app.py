"""The try-it page: upload an image, pick a registered version or alias, compare, download.

FastAPI and uvicorn come with MLflow, so the page adds no dependency; HTML, CSS and script are
inline (nothing is fetched from the internet, so it works offline). The browser posts the raw
file body (no multipart form: that would need python-multipart). The page runs the same
:class:`~srgan_pipeline.serving.model.SuperResolutionModel` inference as the MLflow model, in
this process, one request at a time, and writes no files: results go back in the response.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from pathlib import Path

import mlflow
from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response
from PIL import Image

from srgan_pipeline.checkpoints import generator_from_checkpoint
from srgan_pipeline.devices import pick_device
from srgan_pipeline.imaging import imresize, to_rgb_array
from srgan_pipeline.inference import DEFAULT_TILE, inference_model, upscale_image
from srgan_pipeline.serving.images import (
    DEFAULT_MAX_PIXELS,
    ImageRequestError,
    ImageTooLargeError,
    NotAnImageError,
    open_request_image,
    png_bytes,
)
from srgan_pipeline.serving.registry import describe_versions, load_model_checkpoint

PAGE = Path(__file__).with_name("page.html")
MAX_BODY_BYTES = 50 * 2**20
SCALE = 4
CACHED_MODELS = 3  # generators kept loaded (a default one is ~6 MB)


def create_app(tracking_uri: str, model_name: str, *, max_pixels: int = DEFAULT_MAX_PIXELS,
               tile: int = DEFAULT_TILE, device: str = "auto") -> FastAPI:
    app = FastAPI(title="srgan_pipeline: try the upscaler", docs_url=None, redoc_url=None)
    run_device = pick_device(device)
    registered = _RegisteredGenerators(tracking_uri, model_name, run_device)
    inference_lock = threading.Lock()  # one forward at a time: the cores are the limit

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return PAGE.read_text(encoding="utf-8").replace("{{MAX_PIXELS}}", f"{max_pixels:,}")

    @app.get("/api/models")
    def models() -> dict:
        return {"model_name": model_name, "tracking_uri": tracking_uri,
                "choices": registered.choices(), "max_pixels": max_pixels}

    @app.post("/api/upscale")
    async def upscale(request: Request, model: str = "", method: str = "sr") -> Response:
        if method not in ("sr", "bicubic"):
            raise HTTPException(400, f"method must be sr or bicubic, got {method!r}")
        image = _open_upload(await _read_body(request), max_pixels)
        if method == "bicubic":  # MATLAB bicubic, as the evaluation's bicubic row
            return _png(Image.fromarray(imresize(to_rgb_array(image), SCALE), "RGB"))
        version = registered.version_of(model)

        def run() -> Image.Image:
            with inference_lock:
                return upscale_image(registered.generator(version), image, tile=tile,
                                     device=run_device)

        response = _png(await run_in_threadpool(run))
        response.headers["X-Model-Version"] = str(version)
        return response

    return app


class _RegisteredGenerators:
    """The versions of one registered model: found by models:/ URI, loaded on first use, the
    last ``CACHED_MODELS`` kept ready for inference."""

    def __init__(self, tracking_uri: str, model_name: str, device):
        self.tracking_uri, self.model_name, self.device = tracking_uri, model_name, device
        self.client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self.loaded: OrderedDict[int, object] = OrderedDict()
        self.uri_pattern = re.compile(
            rf"models:/{re.escape(model_name)}(?:@(?P<alias>[\w-]+)|/(?P<v>\d+))")

    def version_of(self, model_uri: str) -> int:
        name = self.model_name
        match = self.uri_pattern.fullmatch(model_uri or "")
        if match is None:
            raise HTTPException(400, f"model must be models:/{name}@<alias> or "
                                     f"models:/{name}/<version>, got {model_uri!r}")
        try:
            if match["alias"]:
                return int(self.client.get_model_version_by_alias(name, match["alias"]).version)
            return int(self.client.get_model_version(name, match["v"]).version)
        except mlflow.exceptions.MlflowException as error:
            raise HTTPException(404, f"no {model_uri} in {self.tracking_uri}: "
                                     f"{error.message}") from error

    def generator(self, version: int):
        if version not in self.loaded:
            mlflow.set_registry_uri(self.tracking_uri)
            mlflow.set_tracking_uri(self.tracking_uri)
            try:
                state = load_model_checkpoint(f"models:/{self.model_name}/{version}")
            except ValueError as error:
                raise HTTPException(500, str(error)) from error
            self.loaded[version] = inference_model(generator_from_checkpoint(state),
                                                   device=self.device)
            while len(self.loaded) > CACHED_MODELS:
                self.loaded.popitem(last=False)
        self.loaded.move_to_end(version)
        return self.loaded[version]

    def choices(self) -> list[dict[str, str]]:
        """Each alias, then each version, as the page's model menu lists them."""
        name = self.model_name
        try:
            versions = describe_versions(self.client, name)
        except mlflow.exceptions.MlflowException:
            versions = []
        choices = [{"uri": f"models:/{name}@{alias}",
                    "label": f"@{alias} (version {v['version']}, {v['model']})"}
                   for v in versions for alias in v["aliases"]]
        choices += [{"uri": f"models:/{name}/{v['version']}",
                     "label": f"version {v['version']} ({v['model']}"
                              + (f", {v['score_rule']} = {float(v['score']):.2f})"
                                 if v["score"] else ")")}
                    for v in versions]
        return choices


def _open_upload(data: bytes, max_pixels: int) -> Image.Image:
    """The uploaded image, or the HTTP error that says what is wrong with it."""
    try:
        return open_request_image(data, max_pixels)
    except ImageTooLargeError as error:
        raise HTTPException(413, str(error)) from error
    except NotAnImageError as error:
        raise HTTPException(415, str(error)) from error
    except ImageRequestError as error:  # empty, damaged or truncated
        raise HTTPException(400, str(error)) from error


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise HTTPException(413, f"the upload is {int(declared):,} bytes, over the limit of "
                                 f"{MAX_BODY_BYTES:,}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise HTTPException(413, f"the upload is over the limit of {MAX_BODY_BYTES:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _png(image: Image.Image) -> Response:
    return Response(png_bytes(image), media_type="image/png",
                    headers={"X-Image-Size": f"{image.width}x{image.height}"})
