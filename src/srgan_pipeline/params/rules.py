"""The value rules of the parameter blocks: strict types, ranges, and the checks pydantic lacks.

Annotated types carry their rules with them, so a node that receives one key alone (e.g.
``params:data_prep.min_size``) is checked by exactly the rule of the whole block.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StrictFloat,
    StrictInt,
    ValidationInfo,
)

from srgan_pipeline.architecture import SCALES
from srgan_pipeline.names import (
    BUILTIN_PHOTOS,
    DEVICE_TYPES,
    GENERATOR_DATASETS,
    MODELS,
    PRECISIONS,
    RUNTIMES,
    VGG19_LAYERS,
    is_model_uri,
)

STRICT = ConfigDict(strict=True, allow_inf_nan=False)


class Params(BaseModel):
    """Base of every parameter block: unknown keys refused, values immutable, types strict."""

    model_config = ConfigDict(extra="forbid", frozen=True, **STRICT)


def _scale_of(info: ValidationInfo) -> int | None:
    return (info.context or {}).get("scale")


def at_least_scale(value: int, info: ValidationInfo) -> int:
    scale = _scale_of(info)
    if scale is not None and value < scale:
        raise ValueError(f"must be an integer >= scale ({scale}), got {value!r}")
    return value


def multiple_of_scale(value: int, info: ValidationInfo) -> int:
    scale = _scale_of(info)
    if scale is not None and value % scale:
        raise ValueError(f"must be a positive multiple of the scale ({scale}), got {value!r}")
    return value


def patch_of_scale(value: int, info: ValidationInfo) -> int:
    scale = _scale_of(info)
    if scale is not None and value % scale:
        fits = sorted({value // scale * scale or scale, (value // scale + 1) * scale})
        raise ValueError(f"must be a multiple of scale ({scale}): the LR crop is patch_size / "
                         f"scale pixels; got {value!r}, use {' or '.join(map(str, fits))}")
    return value


def runtime_on_device(runtime: str, device: str) -> None:
    """Refuses ``runtime=openvino`` beside a device named that is not the CPU (``auto`` is
    decided on the machine that runs it: inference.check_runtime)."""
    if runtime == "openvino" and device.partition(":")[0] in ("cuda", "mps"):
        raise ValueError(f"{{param}}.runtime=openvino runs on the CPU, but {{param}}.device is "
                         f"{device}: set {{param}}.device=cpu, or {{param}}.runtime=torch")


def _supported_scale(value: int) -> int:
    if value not in SCALES:
        raise ValueError(f"must be {' or '.join(map(str, SCALES))} (the generator's upsampling "
                         f"factors), got {value!r}")
    return value


def _pair(value: Any) -> Any:
    if not (isinstance(value, list | tuple) and len(value) == 2):
        raise ValueError(f"must be a pair of numbers [beta1, beta2] in [0, 1), got {value!r}")
    return value


def _device_name(value: str) -> str:
    # Only the spelling is checked here; whether the device exists is decided on the machine
    # that runs the node (devices.pick_device).
    if not re.fullmatch(rf"auto|({'|'.join(DEVICE_TYPES)})(:\d+)?", value):
        raise ValueError(
            f"must be 'auto', 'cpu', 'cuda', 'cuda:<index>' or 'mps', got {value!r}"
        )
    return value


def vgg_layer(value: str) -> str:
    if value not in VGG19_LAYERS:
        raise ValueError(f"must be a VGG19 layer ({', '.join(VGG19_LAYERS)}), got {value!r}")
    return value


def model_names(value: Any) -> Any:
    # kedro run --params splits on commas, so the command line gives several as one string:
    # --params="evaluation.models=bicubic srresnet"
    names = value.split() if isinstance(value, str) else value
    if (not names or not isinstance(names, list | tuple)
            or not all(isinstance(n, str) for n in names) or set(names) - set(MODELS)):
        raise ValueError(f"must be a non-empty list drawn from {list(MODELS)}, got {value!r}")
    return tuple(dict.fromkeys(names))


def builtin_names(value: Any) -> Any:
    names = [value] if isinstance(value, str) else value
    if not (isinstance(names, list | tuple) and all(isinstance(n, str) for n in names)):
        raise ValueError(f"must be a photograph name or a list of them, got {value!r}")
    unknown = [n for n in names if n not in BUILTIN_PHOTOS]
    if unknown:
        raise ValueError(f"unknown photograph(s) {unknown}; scikit-image ships "
                         f"{sorted(BUILTIN_PHOTOS)}")
    return tuple(names)


def inside_source(value: str) -> str:
    path = PurePosixPath(value)
    if not value or path.is_absolute() or ".." in path.parts:
        raise ValueError(f"must be a folder inside the source (relative, without '..'), got "
                         f"{value!r}: it must not reach another source's files")
    return value


def hex_digest(length: int):
    def check(value: str) -> str:
        if not re.fullmatch(f"[0-9a-fA-F]{{{length}}}", value):
            raise ValueError(f"must be {length} hex digits, got {value!r}")
        return value.lower()
    return AfterValidator(check)


PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
Beta = Annotated[StrictFloat, Field(ge=0, lt=1)]
# YAML gives a list; lax only at the outer level so [0.9, 0.999] becomes a tuple.
Betas = Annotated[tuple[Beta, Beta], Strict(False), BeforeValidator(_pair)]
Milestones = Annotated[tuple[Annotated[StrictInt, Field(ge=1)], ...], Strict(False)]
Device = Annotated[str, AfterValidator(_device_name)]
Precision = Literal[PRECISIONS]
Runtime = Literal[RUNTIMES]


def _amp_setting(value: Any) -> Any:
    # one rule, not a union of two, so a mistake gets one message naming every choice
    if value is True or value is False or value == "auto":
        return value
    raise ValueError(f"must be true, false or 'auto', got {value!r}")


# auto: bf16 autocast where the device has bf16 units (devices.use_bf16_autocast)
AmpBf16 = Annotated[Any, AfterValidator(_amp_setting)]
Scale = Annotated[int, AfterValidator(_supported_scale)]


def generator_choice(value: str) -> str:
    if value not in GENERATOR_DATASETS and not is_model_uri(value):
        names = ", ".join(repr(name) for name in GENERATOR_DATASETS)
        raise ValueError(f"must be {names} or an MLflow model URI "
                         f"(models:/srgan_pipeline_generator@champion), got {value!r}")
    return value
