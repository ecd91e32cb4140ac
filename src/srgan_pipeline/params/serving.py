"""The ``serving`` parameter block (conf/base/parameters_serving.yml).

Checked as every block is (``validate_params("serving", ...)``): unknown keys refused with the
valid ones listed, strict types, every error naming the full parameter path.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, ConfigDict

from srgan_pipeline.names import METRIC_DIRECTIONS
from srgan_pipeline.params.rules import Params, PositiveInt


def _alias(value: str) -> str:
    # MLflow reserves "latest" and v<digits> (they would read as versions in a models:/ URI)
    if not re.fullmatch(r"[A-Za-z_][\w-]*", value) or value == "latest" \
            or re.fullmatch(r"v\d+", value):
        raise ValueError(f"must be an MLflow alias (letters, digits, _ and -; not 'latest' "
                         f"or v<number>), got {value!r}")
    return value


def _names(value: Any) -> Any:
    # kedro run --params splits on commas: several sets are one space-separated value; YAML
    # gives a list
    if isinstance(value, str):
        return tuple(value.split())
    return tuple(value) if isinstance(value, list) else value


class _Block(Params):
    # "model_name" is a key of this block, and pydantic reserves the "model_" prefix by default
    model_config = ConfigDict(protected_namespaces=())


class RegistryParams(_Block):
    model_name: str | None  # null: register nothing
    alias: Annotated[str, AfterValidator(_alias)]
    metric: Literal[tuple(METRIC_DIRECTIONS)]  # each with its direction (names.py)
    sets: Annotated[tuple[str, ...], BeforeValidator(_names)] | None  # null: every scored set


class ServingParams(_Block):
    log_models: bool
    max_pixels: PositiveInt
    tile: PositiveInt
    registry: RegistryParams
