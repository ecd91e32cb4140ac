"""The ``upscale`` parameter block (conf/base/parameters_upscale.yml)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

from srgan_pipeline.params.evaluation import TilePerPrecision
from srgan_pipeline.params.rules import (
    Device,
    Params,
    PositiveInt,
    Precision,
    Runtime,
    generator_choice,
)


class UpscaleParams(Params):
    input_dir: str
    model: Annotated[str, AfterValidator(generator_choice)]
    device: Device
    precision: Precision
    tile: TilePerPrecision
    runtime: Runtime
    max_pixels: PositiveInt  # checked from the header before an image is decoded
