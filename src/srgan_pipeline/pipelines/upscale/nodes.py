"""upscale node: every image of ``upscale.input_dir`` through the chosen generator."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from PIL import Image

from srgan_pipeline.checkpoints import CheckpointLoader, generator_from_checkpoint
from srgan_pipeline.imaging import UnreadableImageError, open_image
from srgan_pipeline.inference import Upscaler, plan_inference
from srgan_pipeline.model_choice import chosen_checkpoint
from srgan_pipeline.output_names import distinct_output_names, name_too_long
from srgan_pipeline.params import validate_params
from srgan_pipeline.sources import NOT_AN_IMAGE, scan_folder

logger = logging.getLogger(__name__)


def upscale_folder(
    generator_pretrained: CheckpointLoader, generator_gan: CheckpointLoader, upscale: dict[str, Any]
) -> tuple[dict[str, Callable[[], Image.Image]], dict[str, Any]]:
    """Upscaled images keyed by output name, plus a report: input -> output, and skips.

    Every input ends up upscaled under its own output name (its stem, or its whole name when
    stems collide: :mod:`srgan_pipeline.output_names`) or skipped with the reason: a file that
    does not decode, one over ``upscale.max_pixels``, one of another type (``.gif``, ``.heic``,
    ``.txt``: ``NOT_AN_IMAGE``), or one whose output name is too long for the disk. Each image
    is upscaled when its partition is saved, so one image is in memory at a time.
    """
    settings = validate_params("upscale", upscale)
    folder = Path(settings.input_dir)
    if not folder.is_dir():
        raise ValueError(f"upscale.input_dir: folder '{folder}' does not exist. Put your images "
                         f"there or pass --params=upscale.input_dir=/path/to/images")
    names, others = scan_folder(folder, "upscale.input_dir")
    plan = plan_inference(settings.device, settings.precision, settings.tile, settings.runtime,
                          block="upscale")  # before any checkpoint is read
    checkpoint = chosen_checkpoint(settings.model, generator_pretrained, generator_gan)
    upscaler = plan.prepare(generator_from_checkpoint(checkpoint()))
    _record({"upscale.precision": upscaler.precision, "upscale.tile": upscaler.tile,
             "upscale.runtime": upscaler.runtime,
             "upscale.precision_reason": plan.precision_reason})
    outputs, upscaled, skipped = _planned_outputs(upscaler, folder, names, others,
                                                  settings.max_pixels)
    logger.info("Upscaling %d image(s) from %s with %s in %s on %s with %s (%d skipped)",
                len(outputs), folder, settings.model, upscaler.precision, upscaler.device,
                upscaler.runtime, len(skipped))
    return outputs, {"input_dir": str(folder), "model": settings.model,
                     "precision": upscaler.precision, "runtime": upscaler.runtime,
                     "upscaled": upscaled, "skipped": skipped}


def _record(tags: dict[str, Any]) -> None:
    """Tags on the MLflow run, if one is active. kedro-mlflow imports MLflow to open its run;
    where nothing imported it (``srgan-pipeline upscale``) no run can be active, and importing
    it (seconds) would only find that out."""
    if "mlflow" in sys.modules:
        from srgan_pipeline import tracking

        tracking.set_tags(tags)


def _planned_outputs(upscaler: Upscaler, folder: Path, names: list[str], others: list[str],
                     max_pixels: int) -> tuple[dict[str, Callable], dict[str, str], list[dict]]:
    """Each image's output (upscaled when saved), input -> output name, and the skips."""
    keys, unnamed = distinct_output_names(names)
    unnamed |= {name: NOT_AN_IMAGE for name in others}
    unnamed |= {name: reason for name, key in keys.items()
                if (reason := name_too_long(f"{key}.png"))}
    outputs, upscaled, skipped = {}, {}, []
    for name in sorted([*names, *others]):
        reason = unnamed.get(name)
        if reason is None:
            try:  # header check, then full decode: an oversized or corrupt file fails here
                open_image(folder / name, max_pixels, "upscale.max_pixels").close()
            except UnreadableImageError as error:
                reason = str(error)
        if reason is not None:
            logger.warning("Skipped %s: %s", name, reason)
            skipped.append({"file": name, "reason": reason})
            continue
        outputs[keys[name]] = partial(_upscale_file, upscaler, folder / name)
        upscaled[name] = f"{keys[name]}.png"
    return outputs, upscaled, skipped


def _upscale_file(upscaler: Upscaler, path: Path) -> Image.Image:
    with open_image(path) as image:
        return upscaler.upscale_image(image)
