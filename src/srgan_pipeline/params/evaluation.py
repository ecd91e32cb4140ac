"""The ``evaluation`` parameter block (conf/base/parameters_evaluation.yml)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator

from srgan_pipeline.params.rules import (
    Device,
    NonNegativeInt,
    Params,
    PositiveInt,
    Precision,
    Runtime,
    model_names,
)


class FiguresParams(Params):
    crop: PositiveInt
    default_count: NonNegativeInt
    images: dict[str, list[str]]


class TilePerPrecision(Params):
    """LR tile side of tiled inference for each precision (each runs fastest at its own)."""

    fp32: PositiveInt
    bf16: PositiveInt


class EvaluationParams(Params):
    models: Annotated[tuple[str, ...], BeforeValidator(model_names)]
    device: Device
    precision: Precision
    tile: TilePerPrecision
    runtime: Runtime
    crop_border: NonNegativeInt | None  # null = scale
    images_per_set: PositiveInt | None  # null = all
    figures: FiguresParams
