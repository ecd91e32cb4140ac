"""The ``export`` parameter block (conf/base/parameters_export.yml)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field

from srgan_pipeline.names import EXPORT_FORMATS, ONNX_OPSETS
from srgan_pipeline.params.rules import Params, generator_choice


def _formats(value: Any) -> Any:
    # kedro run --params splits on commas: several formats are one space-separated value
    if isinstance(value, str):
        return tuple(value.split())
    return tuple(value) if isinstance(value, list) else value


def _file_stem(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", value):
        raise ValueError(f"must be a file name stem (letters, digits, _ . -, no folders), got "
                         f"{value!r}")
    return value


class ExportParams(Params):
    """Which generator, into which formats, named how, where; the photograph that checks them."""

    model: Annotated[str, AfterValidator(generator_choice)]
    formats: Annotated[tuple[Literal[EXPORT_FORMATS], ...], BeforeValidator(_formats),
                       Field(min_length=1)]
    name: Annotated[str, AfterValidator(_file_stem)] | None  # null: srgan_pipeline-<model>
    output_dir: str
    onnx_opset: Literal[ONNX_OPSETS]
    verify_image: str | None  # null: the LR of scikit-image's chelsea photograph
