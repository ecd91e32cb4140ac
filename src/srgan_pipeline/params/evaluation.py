"""The ``evaluation`` parameter block (conf/base/parameters_evaluation.yml)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator

from srgan_pipeline.params.inference import InferenceParams
from srgan_pipeline.params.rules import NonNegativeInt, Params, PositiveInt, model_names


class FiguresParams(Params):
    crop: PositiveInt
    default_count: NonNegativeInt
    images: dict[str, list[str]]


class EvaluationParams(InferenceParams):
    """The inference settings (device, precision, tile, runtime), then what is scored."""

    models: Annotated[tuple[str, ...], BeforeValidator(model_names)]
    crop_border: NonNegativeInt | None  # null = scale
    images_per_set: PositiveInt | None  # null = all
    figures: FiguresParams
