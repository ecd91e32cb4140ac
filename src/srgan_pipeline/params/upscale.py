"""The ``upscale`` parameter block (conf/base/parameters_upscale.yml)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, model_validator

from srgan_pipeline.params.evaluation import TilePerPrecision
from srgan_pipeline.params.rules import (
    Device,
    Params,
    PositiveInt,
    Precision,
    Runtime,
    generator_choice,
    runtime_on_device,
)


class UpscaleParams(Params):
    input_dir: str
    model: Annotated[str, AfterValidator(generator_choice)]
    device: Device
    precision: Precision
    tile: TilePerPrecision
    runtime: Runtime
    max_pixels: PositiveInt  # checked from the header before an image is decoded

    @model_validator(mode="after")
    def _runtime_on_device(self) -> UpscaleParams:
        runtime_on_device(self.runtime, self.device)
        return self
