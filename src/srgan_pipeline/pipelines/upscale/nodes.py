"""upscale node: every image of ``upscale.input_dir`` through the chosen generator."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from PIL import Image

from srgan_pipeline.imaging import UnreadableImageError, open_image
from srgan_pipeline.inference import (
    DEFAULT_TILE,
    generator_from_checkpoint,
    inference_model,
    upscale_image,
)
from srgan_pipeline.serving.registry import is_model_uri, load_model_checkpoint
from srgan_pipeline.sources import list_images
from srgan_pipeline.training import pick_device

logger = logging.getLogger(__name__)

Checkpoint = Callable[[], dict[str, Any]]
CHECKPOINTS = {"srgan": "generator_gan", "srresnet": "generator_pretrained"}


def upscale_folder(
    generator_pretrained: Checkpoint, generator_gan: Checkpoint, upscale: dict[str, Any]
) -> tuple[dict[str, Callable[[], Image.Image]], dict[str, Any]]:
    """Upscaled images keyed by their relative path (names kept), plus a report of skips.

    A file that does not decode is reported and skipped; the others are processed. Each image
    is upscaled when its partition is saved, so one image is in memory at a time.
    """
    model = upscale.get("model")
    if model not in CHECKPOINTS and not is_model_uri(model):
        raise ValueError(f"upscale.model must be one of {list(CHECKPOINTS)} or an MLflow model "
                         f"URI (models:/srgan_pipeline_generator@champion), got {model!r}")
    folder = Path(upscale.get("input_dir", ""))
    if not folder.is_dir():
        raise ValueError(f"upscale.input_dir: folder '{folder}' does not exist. Put your images "
                         f"there or pass --params=upscale.input_dir=/path/to/images")
    names = list_images(folder, "upscale.input_dir")
    device = pick_device(upscale.get("device", "auto"))
    checkpoint = {"srgan": generator_gan, "srresnet": generator_pretrained,
                  }.get(model, partial(load_model_checkpoint, model))
    generator = inference_model(generator_from_checkpoint(checkpoint()), device=device)

    tile = upscale.get("tile", DEFAULT_TILE)
    outputs, skipped = {}, []
    for name in names:
        try:
            open_image(folder / name).close()  # full decode: a corrupt file fails here
        except UnreadableImageError as error:
            logger.warning("Skipped %s", error)
            skipped.append({"file": name, "reason": str(error)})
            continue
        outputs[name.rsplit(".", 1)[0]] = partial(
            _upscale_file, generator, folder / name, tile=tile, device=device)
    logger.info("Upscaling %d image(s) from %s with %s (%d skipped)", len(outputs), folder,
                model, len(skipped))
    return outputs, {"input_dir": str(folder), "model": model, "upscaled": sorted(outputs),
                     "skipped": skipped}


def _upscale_file(generator, path: Path, **kwargs) -> Image.Image:
    with open_image(path) as image:
        return upscale_image(generator, image, **kwargs)
