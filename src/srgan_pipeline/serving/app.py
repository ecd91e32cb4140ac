"""The try-it page: upload an image, pick a registered version or alias, compare, download.

FastAPI and uvicorn come with MLflow, so the page adds no dependency; HTML, CSS and script are
inline (nothing is fetched from the internet, so it works offline). The browser posts the raw
file body (no multipart form: that would need python-multipart). The page runs the same
:class:`~srgan_pipeline.inference.Upscaler` as the MLflow model, in this process, one forward
pass at a time, and writes no files: results go back in the response. Its bicubic is MATLAB's
(the evaluation's bicubic row) at the scale of the model it is compared with.

Under load: decoding, bicubic, inference and PNG encoding run in worker threads, never in the
event loop, so one large upload stalls no other request. At most ``max_concurrent`` uploads
are handled at once (each holds up to its body, its image and its result in memory); one more
is answered 503 with ``Retry-After`` at once, before its body is read, rather than queued into
a client's timeout. Requests whose ``Host`` is a name other than localhost or the one the page
was started on are refused (DNS rebinding: a web page whose name is made to resolve to
127.0.0.1 would otherwise reach the page from the user's browser).
"""

from __future__ import annotations

import ipaddress
import re
import threading
from collections import OrderedDict
from pathlib import Path
from urllib.parse import urlsplit

import mlflow
from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, Response
from PIL import Image

from srgan_pipeline.checkpoints import generator_from_checkpoint
from srgan_pipeline.imaging import imresize, to_rgb_array
from srgan_pipeline.inference import DEFAULT_TILE, InferencePlan, Upscaler, plan_inference
from srgan_pipeline.serving.images import (
    DEFAULT_MAX_CONCURRENT,
    DEFAULT_MAX_PIXELS,
    ImageRequestError,
    ImageTooLargeError,
    NotAnImageError,
    open_request_image,
    png_bytes,
)
from srgan_pipeline.serving.registry import describe_versions, load_model_checkpoint

PAGE = Path(__file__).with_name("page.html")
CACHED_MODELS = 3  # generators kept loaded (a default one is ~6 MB)
RETRY_AFTER_S = 5  # the pixel limit keeps one upscale to seconds


def max_body_bytes(max_pixels: int) -> int:
    """The largest upload worth reading for ``max_pixels``: 8 bytes a pixel (16-bit RGBA,
    uncompressed) plus 4 MiB of metadata (EXIF, ICC profile, text)."""
    return 8 * max_pixels + 4 * 2**20


def create_app(tracking_uri: str, model_name: str, *, max_pixels: int = DEFAULT_MAX_PIXELS,
               tile: int = DEFAULT_TILE, device: str = "auto", host: str = "127.0.0.1",
               max_concurrent: int = DEFAULT_MAX_CONCURRENT) -> FastAPI:
    app = FastAPI(title="srgan_pipeline: try the upscaler", docs_url=None, redoc_url=None)
    registered = _RegisteredGenerators(tracking_uri, model_name,
                                       plan_inference(device, "fp32", tile))
    inference_lock = threading.Lock()  # one forward at a time: the cores are the limit
    uploads = _Slots(max_concurrent)
    body_limit = max_body_bytes(max_pixels)

    @app.middleware("http")
    async def refuse_other_hosts(request: Request, call_next):
        header = request.headers.get("host", "")
        if not _is_own_host(header, host):
            return JSONResponse(status_code=421, content={"detail": (
                f"Host {header!r} is not this server: open it as http://127.0.0.1:<port>/ or "
                f"http://localhost:<port>/ (other names are refused: DNS rebinding)")})
        return await call_next(request)

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return PAGE.read_text(encoding="utf-8").replace("{{MAX_PIXELS}}", f"{max_pixels:,}")

    @app.get("/api/models")
    def models() -> dict:
        return {"model_name": model_name, "tracking_uri": tracking_uri,
                "choices": registered.choices(), "max_pixels": max_pixels,
                "uploads_in_progress": uploads.in_use, "max_concurrent": max_concurrent}

    @app.post("/api/upscale")
    async def upscale(request: Request, model: str = "", method: str = "sr") -> Response:
        if method not in ("sr", "bicubic"):
            raise HTTPException(400, f"method must be sr or bicubic, got {method!r}")
        if not uploads.acquire():  # before the body is read: excess costs no memory
            raise HTTPException(503, f"busy: {max_concurrent} uploads are being upscaled; "
                                     f"try again in {RETRY_AFTER_S} s",
                                headers={"Retry-After": str(RETRY_AFTER_S)})
        try:
            data = await _read_body(request, body_limit)

            def run() -> Response:  # in a worker thread: decoding and encoding block too
                image = _open_upload(data, max_pixels)
                version = registered.version_of(model)
                upscaler = registered.upscaler(version)
                headers = {"X-Model-Version": str(version), "X-Scale": str(upscaler.scale)}
                if method == "bicubic":
                    return _png(bicubic(image, upscaler.scale), headers)
                with inference_lock:  # the forward only: encoding must not hold it
                    result = upscaler.upscale_image(image)
                return _png(result, headers)

            return await run_in_threadpool(run)
        finally:
            uploads.release()

    return app


def bicubic(image: Image.Image, scale: int) -> Image.Image:
    """MATLAB bicubic x``scale``, as the evaluation's bicubic row (of the image as RGB)."""
    return Image.fromarray(imresize(to_rgb_array(image), scale), "RGB")


class _Slots:
    """A count of uploads in progress, up to ``size``; acquired and released in the event
    loop's thread only (the handler's own code, not its worker), so it needs no lock."""

    def __init__(self, size: int):
        self.size, self.in_use = size, 0

    def acquire(self) -> bool:
        if self.in_use >= self.size:
            return False
        self.in_use += 1
        return True

    def release(self) -> None:
        self.in_use -= 1


class _RegisteredGenerators:
    """The versions of one registered model: found by models:/ URI, loaded on first use, the
    last ``CACHED_MODELS`` kept prepared (:class:`Upscaler`) as ``plan`` says."""

    def __init__(self, tracking_uri: str, model_name: str, plan: InferencePlan):
        self.tracking_uri, self.model_name, self.plan = tracking_uri, model_name, plan
        self.client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self.loaded: OrderedDict[int, Upscaler] = OrderedDict()
        self.loading = threading.Lock()  # bicubic reads a model's scale outside the forward lock
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

    def upscaler(self, version: int) -> Upscaler:
        with self.loading:
            if version not in self.loaded:
                mlflow.set_registry_uri(self.tracking_uri)
                mlflow.set_tracking_uri(self.tracking_uri)
                try:
                    state = load_model_checkpoint(f"models:/{self.model_name}/{version}")
                except ValueError as error:
                    raise HTTPException(500, str(error)) from error
                self.loaded[version] = self.plan.prepare(generator_from_checkpoint(state))
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


async def _read_body(request: Request, limit: int) -> bytes:
    too_large = (f"over this server's limit of {limit:,} bytes for images of at most its "
                 f"pixel limit: crop or downscale it, or run `kedro run --pipelines=upscale`")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"the upload is {int(declared):,} bytes, {too_large}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"the upload is {too_large}")
        chunks.append(chunk)
    return b"".join(chunks)


def _is_own_host(header: str, bound: str) -> bool:
    """Whether a Host header names this server: localhost, the host it was started on, or any
    IP address (a rebinding attack needs a name of the attacker's; an address is none)."""
    try:
        name = urlsplit(f"//{header}").hostname or ""
    except ValueError:  # e.g. an unclosed "[" of an IPv6 address
        return False
    if name in ("localhost", bound.lower()) or name.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _png(image: Image.Image, headers: dict[str, str] | None = None) -> Response:
    return Response(png_bytes(image), media_type="image/png",
                    headers={"X-Image-Size": f"{image.width}x{image.height}", **(headers or {})})
