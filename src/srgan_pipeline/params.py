"""The parameters of every pipeline: one pydantic model per top-level block of conf/*/parameters*.

Each block (``scale``, ``data_prep``, ``train_gan``, ``evaluation``, ``upscale``) is checked by
``validate_params`` before any node runs (hooks.py) and again by the nodes that read it (so they
work outside Kedro too). Unknown keys are refused with the valid ones listed, and every error
names the full parameter path, e.g. ``upscale.imput_dir: unknown key; valid keys: input_dir,
model, device, tile``.

Defaults live in conf/base only: a pipeline key has no default here, so a missing key is an error
rather than a silent second default. The exceptions are documented optional keys (a source's
``path``/``url``/``size``/..., ``enabled``). Types are strict (``true`` is not a number, ``2.5`` is
not an integer, ``"1e-4"`` is not a number), as YAML and ``--params`` give typed values.

Pydantic does the work (already installed with MLflow); only its messages are rewritten here
(``_describe``) so that they read as parameter paths and expectations, not as Python types.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StrictFloat,
    StrictInt,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from srgan_pipeline.serving.params import ServingParams  # noqa: E402 (pydantic only)

__all__ = [
    "PARAMETER_BLOCKS",
    "AdversarialParams",
    "DataPrepParams",
    "EvaluationParams",
    "ParameterError",
    "PretrainParams",
    "SourceParams",
    "TrainGanParams",
    "PhaseParams",
    "UpscaleParams",
    "blocks_read_by",
    "validate_params",
]


class ParameterError(ValueError):
    """Parameters that do not fit their schema; the message names each offending path."""


_STRICT = ConfigDict(strict=True, allow_inf_nan=False)


class Params(BaseModel):
    """Base of every parameter block: unknown keys refused, values immutable, types strict."""

    model_config = ConfigDict(extra="forbid", frozen=True, **_STRICT)


# --------------------------------------------------------------------------- value rules
# Annotated types carry their rules with them, so a node that receives one key alone
# (e.g. ``params:data_prep.min_size``) is checked by exactly the rule of the whole block.


def _scale_of(info: ValidationInfo) -> int | None:
    return (info.context or {}).get("scale")


def _at_least_scale(value: int, info: ValidationInfo) -> int:
    scale = _scale_of(info)
    if scale is not None and value < scale:
        raise ValueError(f"must be an integer >= scale ({scale}), got {value!r}")
    return value


def _multiple_of_scale(value: int, info: ValidationInfo) -> int:
    scale = _scale_of(info)
    if scale is not None and value % scale:
        raise ValueError(f"must be a positive multiple of the scale ({scale}), got {value!r}")
    return value


def _supported_scale(value: int) -> int:
    if value not in (2, 4):
        raise ValueError(f"must be 2 or 4 (the generator's upsampling factors), got {value!r}")
    return value


def _pair(value: Any) -> Any:
    if not (isinstance(value, list | tuple) and len(value) == 2):
        raise ValueError(f"must be a pair of numbers [beta1, beta2] in [0, 1), got {value!r}")
    return value


def _device_name(value: str) -> str:
    # Only the spelling is checked here; whether the device exists is decided on the machine
    # that runs the node (training.pick_device).
    if not re.fullmatch(r"auto|(cpu|cuda|mps)(:\d+)?", value):
        raise ValueError(
            f"must be 'auto', 'cpu', 'cuda', 'cuda:<index>' or 'mps', got {value!r}"
        )
    return value


def _vgg_layer(value: str) -> str:
    from srgan_pipeline.models.perceptual import VGG19_LAYERS  # torch: imported when used

    if value not in VGG19_LAYERS:
        raise ValueError(f"must be a VGG19 layer ({', '.join(VGG19_LAYERS)}), got {value!r}")
    return value


def _model_names(value: Any) -> Any:
    # kedro run --params splits on commas, so the command line gives several as one string:
    # --params="evaluation.models=bicubic srresnet"
    from srgan_pipeline.evaluation import MODELS

    names = value.split() if isinstance(value, str) else value
    if (not names or not isinstance(names, list | tuple)
            or not all(isinstance(n, str) for n in names) or set(names) - set(MODELS)):
        raise ValueError(f"must be a non-empty list drawn from {list(MODELS)}, got {value!r}")
    return tuple(dict.fromkeys(names))


def _builtin_names(value: Any) -> Any:
    from srgan_pipeline.sources import BUILTIN_PHOTOS

    names = [value] if isinstance(value, str) else value
    if not (isinstance(names, list | tuple) and all(isinstance(n, str) for n in names)):
        raise ValueError(f"must be a photograph name or a list of them, got {value!r}")
    unknown = [n for n in names if n not in BUILTIN_PHOTOS]
    if unknown:
        raise ValueError(f"unknown photograph(s) {unknown}; scikit-image ships "
                         f"{sorted(BUILTIN_PHOTOS)}")
    return tuple(names)


def _inside_source(value: str) -> str:
    path = PurePosixPath(value)
    if not value or path.is_absolute() or ".." in path.parts:
        raise ValueError(f"must be a folder inside the source (relative, without '..'), got "
                         f"{value!r}: it must not reach another source's files")
    return value


def _hex_digest(length: int):
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
Scale = Annotated[int, AfterValidator(_supported_scale)]


# --------------------------------------------------------------------------- data_prep


class TilesParams(Params):
    """Tiles must map to whole LR pixels, and overlap or touch (gaps would drop image content)."""

    size: Annotated[PositiveInt, AfterValidator(_multiple_of_scale)]
    stride: Annotated[PositiveInt, AfterValidator(_multiple_of_scale)]

    @model_validator(mode="after")
    def _no_gaps(self) -> TilesParams:
        if self.stride > self.size:
            raise ValueError(
                f"stride ({self.stride}) is larger than size ({self.size}): parts of every "
                "image would never be seen in training; use a stride <= size"
            )
        return self


class SourceParams(Params):
    """One source; its kind follows from the location it names (sources.py, README)."""

    kind: Literal["url", "local", "builtin"] | None = None
    enabled: bool = True
    path: str | None = None
    url: str | None = None
    size: PositiveInt | None = None
    sha256: Annotated[str, _hex_digest(64)] | None = None
    md5: Annotated[str, _hex_digest(32)] | None = None
    images_in: Annotated[str, AfterValidator(_inside_source)] | None = None
    builtin: Annotated[tuple[str, ...], BeforeValidator(_builtin_names)] | None = None
    note: str | None = None

    @model_validator(mode="after")
    def _located(self) -> SourceParams:
        # A disabled source needs no location. "{param}" is replaced by this source's path.
        if not self.enabled:
            return self
        kind = self.kind or self.location_kind()
        if kind is None:
            raise ValueError(
                "this source has no location. Set {param}.path=<folder of images> or "
                "{param}.url=<archive URL> (for example with kedro run "
                '--params="{param}.path=/data/my_images"), or turn it off with '
                "{param}.enabled=false."
            )
        required = {"local": "path", "url": "url", "builtin": "builtin"}[kind]
        if not getattr(self, required):
            raise ValueError(f"kind is {kind!r} but {{param}}.{required} is not set")
        return self

    def location_kind(self) -> str | None:
        """The kind the location implies: a path wins over a url (no download needed)."""
        return "local" if self.path else "url" if self.url else "builtin" if self.builtin else None


Sources = dict[str, SourceParams] | None


class DataPrepParams(Params):
    raw_dir: str
    min_size: Annotated[PositiveInt, AfterValidator(_at_least_scale)]
    max_pixels: PositiveInt  # checked from the header before an image is decoded
    show_progress: bool
    workers: PositiveInt | None  # null = every core this process may use
    tiles: TilesParams
    train_sources: Sources
    eval_sets: Sources


# --------------------------------------------------------------------------- train_gan


class GeneratorParams(Params):
    channels: PositiveInt
    num_blocks: PositiveInt
    residual_init_scale: PositiveFloat | None
    input_skip: bool


class CriticParams(Params):
    base_channels: PositiveInt


class PerceptualParams(Params):
    layer: Annotated[str, AfterValidator(_vgg_layer)]
    weights: str  # imagenet, random, or a path (checked when the loss is built)


class PhaseParams(Params):
    """Fields both training phases have: the loops read their settings from these models."""

    iterations: PositiveInt
    batch_size: PositiveInt
    patch_size: PositiveInt
    lr: PositiveFloat
    betas: Betas
    pixel_loss: Literal["mse", "l1"]
    perceptual_weight: NonNegativeFloat
    log_every: PositiveInt
    checkpoint_every: PositiveInt
    seed: NonNegativeInt
    channels_last: bool
    amp_bf16: bool
    max_minutes: PositiveFloat | None
    lr_schedule: Literal["constant", "cosine", "step"]
    warmup_steps: NonNegativeInt
    # step: the learning rate is multiplied by lr_gamma at each of these generator steps
    # (absolute steps, so a resumed or extended run keeps them where they were).
    lr_milestones: Milestones
    lr_gamma: Annotated[float, Field(gt=0, le=1)]

    @model_validator(mode="after")
    def _schedule_fits(self) -> PhaseParams:
        steps = self.lr_milestones
        if list(steps) != sorted(set(steps)):
            raise ValueError(f"lr_milestones must be increasing steps, got {list(steps)}")
        if self.lr_schedule == "step" and not steps:
            raise ValueError("lr_schedule is 'step' but lr_milestones is empty: list the steps "
                             "at which the learning rate is multiplied by lr_gamma")
        if self.lr_schedule != "step" and steps:
            raise ValueError(f"lr_milestones {list(steps)} apply to lr_schedule 'step' only; "
                             f"lr_schedule is {self.lr_schedule!r}: set lr_milestones to []")
        return self


class PretrainParams(PhaseParams):
    """Phase 1: the critic fields are refused as unknown keys."""

    ema_decay: Annotated[float, Field(gt=0, lt=1)] | None


class AdversarialParams(PhaseParams):
    """Phase 2: the weight-averaging field is refused as an unknown key."""

    critic_lr: PositiveFloat
    critic_betas: Betas
    n_critic: PositiveInt
    gp_weight: NonNegativeFloat
    adversarial_weight: NonNegativeFloat


class TrainGanParams(Params):
    device: Device
    num_workers: NonNegativeInt
    resume: bool
    checkpoint_dir: str
    generator: GeneratorParams
    critic: CriticParams
    perceptual: PerceptualParams
    pretrain: PretrainParams
    adversarial: AdversarialParams


# --------------------------------------------------------------------------- evaluation, upscale


class FiguresParams(Params):
    crop: PositiveInt
    default_count: NonNegativeInt
    images: dict[str, list[str]]


class EvaluationParams(Params):
    models: Annotated[tuple[str, ...], BeforeValidator(_model_names)]
    device: Device
    tile: PositiveInt
    crop_border: NonNegativeInt | None  # null = scale
    images_per_set: PositiveInt | None  # null = all
    figures: FiguresParams


def _generator_choice(value: str) -> str:
    from srgan_pipeline.serving.params import is_model_uri

    if value not in ("srgan", "srresnet") and not is_model_uri(value):
        raise ValueError(f"must be 'srgan', 'srresnet' or an MLflow model URI "
                         f"(models:/srgan_pipeline_generator@champion), got {value!r}")
    return value


class UpscaleParams(Params):
    input_dir: str
    model: Annotated[str, AfterValidator(_generator_choice)]
    device: Device
    tile: PositiveInt
    max_pixels: PositiveInt  # checked from the header before an image is decoded


PARAMETER_BLOCKS: dict[str, Any] = {
    "scale": Scale,
    "data_prep": DataPrepParams,
    "train_gan": TrainGanParams,
    "evaluation": EvaluationParams,
    "upscale": UpscaleParams,
    "serving": ServingParams,
}


# --------------------------------------------------------------------------- validation


def validate_params(path: str, value: Any, *, scale: int | None = None,
                    schema: Any = None) -> Any:
    """``value`` checked against the schema of parameter ``path``; raises ParameterError.

    ``path`` is a block (``"train_gan"``) or a key inside one (``"data_prep.tiles"``,
    ``"data_prep.min_size"``), as a node receives it. ``scale`` enables the checks relative to
    the top-level ``scale`` (tile sizes, min_size). ``schema`` overrides the one found from
    ``path``, which then only names the value in messages. Returns the validated value: a
    frozen model for a block, the normalised value for a single key.
    """
    schema = _schema_at(path) if schema is None else schema
    # A model brings its own config; a single key (or a mapping of models) gets the same rules.
    config = None if isinstance(schema, type) and issubclass(schema, BaseModel) else _STRICT
    try:
        return TypeAdapter(schema, config=config).validate_python(value, context={"scale": scale})
    except ValidationError as error:
        raise ParameterError(describe_errors(error, path, schema)) from None


def blocks_read_by(pipeline) -> list[str]:
    """The top-level parameter blocks a pipeline's nodes read (``params:a.b`` -> ``a``)."""
    return sorted({name.removeprefix("params:").split(".", 1)[0]
                   for name in pipeline.datasets() if name.startswith("params:")})


def describe_errors(error: ValidationError, path: str, schema: Any) -> str:
    """One line per error: ``<path>.<key>: <what is expected>, got <value>``."""
    lines = []
    for item in error.errors():
        loc = [part for part in item["loc"] if not _is_branch_tag(part)]
        where = path + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc)
        keys = [p for p in loc if isinstance(p, str)]
        message = _describe(item, schema, keys, path.split(".", 1)[0])
        lines.append(f"{where}: {message}".replace("{param}", where))
    return "\n".join(dict.fromkeys(lines))


def _describe(item: dict[str, Any], schema: Any, keys: list[str], block: str) -> str:
    kind, ctx, got = item["type"], item.get("ctx") or {}, item["input"]
    if kind == "extra_forbidden":
        return f"unknown key; valid keys: {', '.join(_fields_at(schema, keys[:-1]))}"
    if kind == "missing":
        conf = "parameters.yml" if block == "scale" else f"parameters_{block}.yml"
        return f"missing; conf/base/{conf} lists every key with its default"
    if kind == "value_error":  # our own rules: the message already says what and what was got
        return str(ctx.get("error", item["msg"]))
    bounds = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<",
              "less_than_equal": "<="}
    if kind in bounds:
        limit = next(iter(ctx.values()))
        return f"must be {bounds[kind]} {limit:g}, got {got!r}"
    expected = {
        "int_type": "an integer", "int_from_float": "an integer", "bool_type": "true or false",
        "float_type": "a number", "float_parsing": "a number",
        "finite_number": "a finite number", "string_type": "a string",
        "model_type": "a mapping of keys", "dict_type": "a mapping", "list_type": "a list",
        "tuple_type": "a list", "literal_error": ctx.get("expected", ""),
    }.get(kind)
    if expected is None:
        return f"{item['msg'].replace('Input should be', 'must be')}, got {got!r}"
    return f"must be {expected}, got {got!r}"


def _is_branch_tag(part: Any) -> bool:
    # Pydantic names the branch of a union it tried (e.g. "function-after[...]"): not a key.
    return isinstance(part, str) and ("[" in part or part in ("none", "int", "str"))


def _fields_at(schema: Any, keys: list[str]) -> list[str]:
    """Field names of the model found by following ``keys`` from ``schema``."""
    model = _model_in(schema)
    for key in keys:
        if model is None:
            break
        if key in model.model_fields:
            model = _model_in(model.model_fields[key].annotation)
        # else: a free key of a mapping (a source name): the model stays the mapping's value
    return list(model.model_fields) if model is not None else []


def _model_in(schema: Any) -> type[BaseModel] | None:
    """The model inside ``schema``: itself, or inside Optional / dict[str, model] / Annotated."""
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        return schema
    if get_origin(schema) in (Union, dict, Annotated) or type(schema).__name__ == "UnionType":
        for arg in get_args(schema):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


def _schema_at(path: str) -> Any:
    """The schema of parameter ``path``: a block, or a field inside one with its rules."""
    block, *keys = path.split(".")
    if block not in PARAMETER_BLOCKS:
        raise ParameterError(f"{block}: unknown parameter block; known: "
                             f"{', '.join(PARAMETER_BLOCKS)}")
    schema = PARAMETER_BLOCKS[block]
    for depth, key in enumerate(keys):
        model = _model_in(schema)
        if model is None or key not in model.model_fields:
            raise ParameterError(f"{'.'.join([block, *keys[:depth + 1]])}: unknown key")
        info = model.model_fields[key]
        schema = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
    return schema
