"""The upscaler as an MLflow pyfunc model, and how a training checkpoint becomes one.

Why a custom pyfunc and not kedro-mlflow's ``pipeline_ml_factory`` (the ecosystem's convention):
the ``upscale`` pipeline reads a folder named by a parameter and writes a folder plus a report
(two outputs), while ``pipeline_ml_factory`` needs an inference pipeline with exactly one
output whose input is the request itself, and every other input persisted; its
``KedroPipelineModel`` would also run a Kedro runner and catalog per request. What both share
is the inference itself: this model runs the pipeline's own ``inference.Upscaler`` (tiled,
bounded memory), prepared as evaluation and upscale prepare theirs. It is
stored as "models from code" (:mod:`.model_code`, MLflow's recommended form: nothing is
pickled), with this package as its code, so a registered model keeps working after the
project's code moves on.

Request: a DataFrame with a ``binary`` column ``image`` (MLflow's scoring server base64-decodes
it from JSON), one encoded PNG/JPEG/... per row. Answer: a column ``image`` of PNG bytes
(base64 in the server's JSON), the generator's scale (x4 by default) times the size of each
input.
"""

import hashlib
import importlib.metadata
import io
import logging
import re
import tempfile
import threading
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, TEMPORARILY_UNAVAILABLE
from mlflow.types import ColSpec, Schema
from PIL import Image

from srgan_pipeline.checkpoints import evaluated_weights, generator_from_checkpoint
from srgan_pipeline.inference import DEFAULT_TILE, plan_inference
from srgan_pipeline.model_card import model_card
from srgan_pipeline.serving.images import (
    DEFAULT_MAX_CONCURRENT,
    DEFAULT_MAX_PIXELS,
    ImageRequestError,
    NotAnImageError,
    open_request_image,
    png_bytes,
)

logger = logging.getLogger(__name__)

COLUMN = "image"
ARTIFACT = "generator"  # artifacts key of the slim checkpoint, stored as artifacts/generator.pt
SIGNATURE = ModelSignature(inputs=Schema([ColSpec("binary", COLUMN)]),
                           outputs=Schema([ColSpec("binary", COLUMN)]))
BASE64_TEXT = re.compile(rb"[A-Za-z0-9+/=\s]{4,}")
MODEL_CODE = Path(__file__).with_name("model_code.py")
PACKAGE_DIR = Path(__file__).resolve().parents[1]
# What the model imports, pinned to what is installed: nothing is resolved at serving time with
# `--env-manager local` (the documented way: the default builds a virtualenv, which needs the
# internet); the list records what the model was logged with.
REQUIREMENTS = ("mlflow", "torch", "numpy", "pandas", "pillow", "scikit-image", "tqdm")


class SuperResolutionModel(mlflow.pyfunc.PythonModel):
    """Encoded images in, PNGs at the generator's scale out, through the pipeline's tiled
    inference (in fp32 with PyTorch, on ``device``: auto picks cuda, mps or cpu).

    The scoring server runs each request in a thread of its own and stops waiting after its
    timeout without stopping the work, so requests beyond ``max_concurrent`` are refused at once
    (503, TEMPORARILY_UNAVAILABLE) instead of piling up into timeouts; forward passes run one
    at a time (the cores are the limit). Errors reach the client as a message, never as a
    stack trace (that goes to the server's log).
    """

    def load_context(self, context) -> None:
        config = context.model_config or {}
        self.max_pixels = int(config.get("max_pixels", DEFAULT_MAX_PIXELS))
        plan = plan_inference(config.get("device", "auto"), "fp32",
                              int(config.get("tile", DEFAULT_TILE)))
        self.max_concurrent = int(config.get("max_concurrent", DEFAULT_MAX_CONCURRENT))
        self.requests = threading.BoundedSemaphore(self.max_concurrent)
        self.forward = threading.Lock()
        state = torch.load(context.artifacts[ARTIFACT], map_location="cpu", weights_only=True)
        self.upscaler = plan.prepare(generator_from_checkpoint(state))

    def predict(self, context, model_input: pd.DataFrame, params=None):
        if not self.requests.acquire(blocking=False):
            raise MlflowException(f"busy: {self.max_concurrent} requests are being upscaled; "
                                  f"try again in a few seconds",
                                  error_code=TEMPORARILY_UNAVAILABLE)
        try:
            return self._predict(model_input)
        finally:
            self.requests.release()

    def _predict(self, model_input: pd.DataFrame) -> pd.DataFrame:
        try:
            images = request_images(model_input, self.max_pixels)
        except ImageRequestError as error:
            # INVALID_PARAMETER_VALUE: the scoring server answers 400 with this message as JSON
            raise MlflowException.invalid_parameter_value(str(error)) from error
        try:
            with self.forward:
                return pd.DataFrame({COLUMN: [png_bytes(self.upscale(i)) for i in images]})
        except Exception as error:
            logger.exception("upscaling a request failed")
            raise MlflowException(f"upscaling failed ({type(error).__name__}: {error}); the "
                                  f"server's log has the details", error_code=INTERNAL_ERROR
                                  ) from error

    def upscale(self, image: Image.Image) -> Image.Image:
        return self.upscaler.upscale_image(image)


def request_images(model_input: Any, max_pixels: int) -> list[Image.Image]:
    """Every row's image, decoded and checked; the whole request must fit the pixel budget."""
    if not isinstance(model_input, pd.DataFrame) or COLUMN not in model_input.columns:
        raise ImageRequestError(f"send a table with one binary column '{COLUMN}' (one encoded "
                                f"image per row); got {type(model_input).__name__}")
    if len(model_input) == 0:
        raise ImageRequestError(f"the '{COLUMN}' column holds no rows: send at least one image")
    images, total = [], 0
    for row, data in enumerate(model_input[COLUMN]):
        if isinstance(data, str):  # a client that skipped the binary type: still base64
            raise ImageRequestError(f"row {row}: '{COLUMN}' is text, not bytes: send the image "
                                    f"base64-encoded in a column of type binary")
        try:
            image = open_request_image(bytes(data), max_pixels)
        except ImageRequestError as error:
            hint = ""
            if isinstance(error, NotAnImageError) and BASE64_TEXT.fullmatch(bytes(data)):
                # the scoring server's "inputs"/"instances" forms leave binary columns encoded
                hint = (f" (they look like base64 text: send JSON 'dataframe_split' or "
                        f"'dataframe_records' with a column '{COLUMN}', which the scoring "
                        f"server base64-decodes)")
            raise type(error)(f"row {row}: {error}{hint}") from error
        total += image.width * image.height
        if total > max_pixels:
            raise ImageRequestError(f"the request's images hold {total:,} pixels in all, over "
                                    f"this server's limit of {max_pixels:,} per request: send "
                                    f"fewer or smaller images per request")
        images.append(image)
    return images


def example_input() -> pd.DataFrame:
    """A 16x16 PNG gradient: MLflow stores it with the model and runs it once when logging."""
    ramp = np.linspace(0, 255, 16, dtype=np.uint8)
    rgb = np.stack(np.broadcast_arrays(ramp[None, :], ramp[:, None], ramp[::-1, None]), axis=-1)
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb), "RGB").save(buffer, format="PNG")
    return pd.DataFrame({COLUMN: [buffer.getvalue()]})


def slim_checkpoint(state: dict[str, Any]) -> dict[str, Any]:
    """The generator's part of a training checkpoint (its EMA weights when it has them)."""
    weights = evaluated_weights(state)
    return {"generator_config": dict(weights["generator_config"]),
            "generator": weights["generator"], "phase": state.get("phase"),
            "step": state.get("step")}


def weights_digest(slim: dict[str, Any]) -> str:
    """sha256 of the architecture and weights: the same generator gets the same digest."""
    digest = hashlib.sha256(repr(sorted(slim["generator_config"].items())).encode())
    for key, tensor in sorted(slim["generator"].items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def logged_card(digest: str) -> dict[str, Any] | None:
    """The model card of the model of these weights logged in the active run's experiment."""
    run = mlflow.active_run()
    if run is None:
        return None
    found = mlflow.search_logged_models(
        experiment_ids=[run.info.experiment_id],
        filter_string=f"tags.weights_sha256 = '{digest}'", output_format="list")
    if not found:
        return None
    return (mlflow.models.get_model_info(found[0].model_uri).metadata or {}).get("model_card")


def requirements() -> list[str]:
    return [f"{name}=={importlib.metadata.version(name)}" for name in REQUIREMENTS]


def log_generator_model(state: dict[str, Any], *, model: str,
                        max_pixels: int = DEFAULT_MAX_PIXELS, tile: int = DEFAULT_TILE,
                        training: list[dict[str, Any]] | None = None) -> tuple[str, str]:
    """Log the checkpoint's generator as a model of the active run; (model URI, digest).

    ``model`` is the generator's name (``srresnet`` or ``srgan``, as in ``evaluation.models``):
    the logged model is ``<model>_generator``, tagged ``model``. Its MLmodel file's metadata
    holds the model card (:mod:`..model_card`; ``training``: the sources trained on).

    A generator already logged in this experiment (same digest: e.g. evaluation scoring the
    checkpoint that train_gan logged) is not logged twice: its URI is returned.
    """
    slim = slim_checkpoint(state)
    digest = weights_digest(slim)
    run = mlflow.active_run()
    found = mlflow.search_logged_models(
        experiment_ids=[run.info.experiment_id],
        filter_string=f"tags.weights_sha256 = '{digest}'", output_format="list")
    if found:
        return found[0].model_uri, digest
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{ARTIFACT}.pt"
        torch.save(slim, path)
        info = mlflow.pyfunc.log_model(
            name=f"{model}_generator",
            python_model=str(MODEL_CODE),
            artifacts={ARTIFACT: str(path)},
            code_paths=[str(PACKAGE_DIR)],
            signature=SIGNATURE,
            input_example=example_input(),
            pip_requirements=requirements(),
            model_config={"max_pixels": int(max_pixels), "tile": int(tile), "device": "auto"},
            metadata={"model_card": model_card(slim, model, training)},
            tags={"weights_sha256": digest, "model": model, "phase": str(slim["phase"]),
                  "step": str(slim["step"])},
        )
    return info.model_uri, digest
