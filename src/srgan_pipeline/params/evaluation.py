"""The ``evaluation`` parameter block (conf/base/parameters_evaluation.yml)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator

from srgan_pipeline.names import LPIPS_NETS
from srgan_pipeline.params.inference import InferenceParams
from srgan_pipeline.params.rules import NonNegativeInt, Params, PositiveInt, model_names


class FiguresParams(Params):
    crop: PositiveInt
    default_count: NonNegativeInt
    images: dict[str, list[str]]


class LPIPSParams(Params):
    net: Literal[LPIPS_NETS]
    weights: Literal["imagenet", "random"]  # random: an explicit offline opt-in, NOT LPIPS


def _niqe_params(value: str) -> str:
    # "published", or a file of the same numbers; whether the published one is there (or can
    # be downloaded) is checked before any scoring (niqe.load_pristine_model)
    if value != "published" and not value.endswith((".mat", ".npz")):
        raise ValueError(f"must be 'published' or a path to NIQE's modelparameters.mat (or "
                         f"BasicSR's niqe_pris_params.npz), got {value!r}")
    return value


class NIQEParams(Params):
    params: Annotated[str, AfterValidator(_niqe_params)]


class EvaluationParams(InferenceParams):
    """The inference settings (device, precision, tile, runtime), then what is scored."""

    models: Annotated[tuple[str, ...], BeforeValidator(model_names)]
    crop_border: NonNegativeInt | None  # null = scale
    images_per_set: PositiveInt | None  # null = all
    figures: FiguresParams
    lpips: LPIPSParams | None  # null: not scored
    niqe: NIQEParams | None  # null: not scored
