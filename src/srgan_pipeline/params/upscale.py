"""The ``upscale`` parameter block (conf/base/parameters_upscale.yml)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

from srgan_pipeline.params.inference import InferenceParams
from srgan_pipeline.params.rules import PositiveInt, generator_choice


class UpscaleParams(InferenceParams):
    """The inference settings (device, precision, tile, runtime), then what is upscaled."""

    input_dir: str
    model: Annotated[str, AfterValidator(generator_choice)]
    max_pixels: PositiveInt  # checked from the header before an image is decoded
