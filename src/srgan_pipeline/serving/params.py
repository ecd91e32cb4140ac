"""The ``serving`` parameter block (conf/base/parameters_serving.yml), checked with pydantic.

Same conventions as the project's other parameter blocks: unknown keys refused with the valid
ones listed, strict types, every error naming the full parameter path. Also the rule for an
MLflow model URI, which ``upscale.model`` accepts besides ``srgan`` / ``srresnet``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PositiveInt,
)

# models:/<name>@<alias>, models:/<name>/<version>, models:/m-<logged model id>, runs:/<id>/<path>
MODEL_URI = re.compile(r"models:/[^/@\s]+(@[\w-]+|/\d+)?|runs:/[0-9a-f]{32}/\S+")


def is_model_uri(value: Any) -> bool:
    return isinstance(value, str) and MODEL_URI.fullmatch(value) is not None


def _alias(value: str) -> str:
    # MLflow reserves "latest" and v<digits> (they would read as versions in a models:/ URI)
    if not re.fullmatch(r"[A-Za-z_][\w-]*", value) or value == "latest" \
            or re.fullmatch(r"v\d+", value):
        raise ValueError(f"must be an MLflow alias (letters, digits, _ and -; not 'latest' "
                         f"or v<number>), got {value!r}")
    return value


def _names(value: Any) -> Any:
    # kedro run --params splits on commas: several sets are one space-separated value
    return tuple(value.split()) if isinstance(value, str) else value


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True,
                              protected_namespaces=())


class RegistryParams(_Block):
    model_name: str | None  # null: register nothing
    alias: Annotated[str, AfterValidator(_alias)]
    metric: Literal["psnr_y", "ssim_y", "psnr_rgb"]
    sets: Annotated[tuple[str, ...], BeforeValidator(_names)] | None  # null: every scored set


class ServingParams(_Block):
    log_models: bool
    max_pixels: PositiveInt
    tile: PositiveInt
    registry: RegistryParams


def validate_serving(value: Any) -> ServingParams:
    """``params:serving`` checked as every parameter block is (params.validate_params)."""
    from srgan_pipeline.params import validate_params

    return validate_params("serving", value)
