"""The parameters of every pipeline: one pydantic model per top-level block of conf/*/parameters*.

Each block (``scale``, ``data_prep``, ``train_gan``, ``evaluation``, ``upscale``) is checked by
``validate_params`` before any node runs (hooks.py) and again by the nodes that read it (so they
work outside Kedro too). Unknown keys are refused with the valid ones listed, and every error
names the full parameter path, e.g. ``upscale.imput_dir: unknown key; valid keys: input_dir,
model, device, precision, tile``.

Defaults live in conf/base only: a pipeline key has no default here, so a missing key is an error
rather than a silent second default. The exceptions are documented optional keys (a source's
``path``/``url``/``size``/..., ``enabled``). Types are strict (``true`` is not a number, ``2.5`` is
not an integer, ``"1e-4"`` is not a number), as YAML and ``--params`` give typed values.

Pydantic does the work (already installed with MLflow): the block models are here, their value
rules in ``rules.py``, and ``messages.py`` rewrites pydantic's errors so that they read as
parameter paths and expectations, not as Python types.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from srgan_pipeline.params.messages import describe_errors, model_in
from srgan_pipeline.params.rules import (
    STRICT,
    AmpBf16,
    Betas,
    Device,
    Milestones,
    NonNegativeFloat,
    NonNegativeInt,
    Params,
    PositiveFloat,
    PositiveInt,
    Precision,
    Runtime,
    Scale,
    at_least_scale,
    builtin_names,
    generator_choice,
    hex_digest,
    inside_source,
    model_names,
    multiple_of_scale,
    vgg_layer,
)
from srgan_pipeline.serving.params import ServingParams  # noqa: E402 (pydantic only)

__all__ = [
    "PARAMETER_BLOCKS",
    "AdversarialParams",
    "DataPrepParams",
    "DistributedParams",
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


# --------------------------------------------------------------------------- data_prep


class TilesParams(Params):
    """Tiles must map to whole LR pixels, and overlap or touch (gaps would drop image content)."""

    size: Annotated[PositiveInt, AfterValidator(multiple_of_scale)]
    stride: Annotated[PositiveInt, AfterValidator(multiple_of_scale)]

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
    sha256: Annotated[str, hex_digest(64)] | None = None
    md5: Annotated[str, hex_digest(32)] | None = None
    images_in: Annotated[str, AfterValidator(inside_source)] | None = None
    builtin: Annotated[tuple[str, ...], BeforeValidator(builtin_names)] | None = None
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


class ArchiveLimitsParams(Params):
    """What one archive may extract to (archives.ArchiveLimits), refused before extracting."""

    max_members: PositiveInt
    max_bytes: PositiveInt
    max_ratio: PositiveFloat  # extracted bytes per byte of archive


class DataPrepParams(Params):
    raw_dir: str
    min_size: Annotated[PositiveInt, AfterValidator(at_least_scale)]
    max_pixels: PositiveInt  # checked from the header before an image is decoded
    show_progress: bool
    workers: PositiveInt | None  # null = every core this process may use
    tiles: TilesParams
    archive_limits: ArchiveLimitsParams
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
    layer: Annotated[str, AfterValidator(vgg_layer)]
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
    amp_bf16: AmpBf16
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


class DistributedParams(Params):
    """Data-parallel training (training/distributed.py): processes per machine and machines."""

    nproc_per_node: PositiveInt  # 1: today's single-process training, nothing started
    nnodes: PositiveInt
    node_rank: NonNegativeInt
    master_addr: str
    master_port: Annotated[int, Field(ge=1, le=65535)] | None  # null: a free port, one machine
    sync_batchnorm: bool  # torch's SyncBatchNorm; CUDA only (refused when training on CPU)

    @model_validator(mode="after")
    def _nodes_fit(self) -> DistributedParams:
        if self.node_rank >= self.nnodes:
            raise ValueError(f"node_rank ({self.node_rank}) must be < nnodes ({self.nnodes}): "
                             "machines are numbered 0 .. nnodes-1")
        if self.nnodes > 1 and self.master_port is None:
            raise ValueError(f"nnodes is {self.nnodes} but master_port is null: every machine "
                             "must name the same master_addr and master_port (node 0's)")
        return self

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes


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
    distributed: DistributedParams


# --------------------------------------------------------------------------- evaluation, upscale


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


class UpscaleParams(Params):
    input_dir: str
    model: Annotated[str, AfterValidator(generator_choice)]
    device: Device
    precision: Precision
    tile: TilePerPrecision
    runtime: Runtime
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
    config = None if isinstance(schema, type) and issubclass(schema, BaseModel) else STRICT
    try:
        return TypeAdapter(schema, config=config).validate_python(value, context={"scale": scale})
    except ValidationError as error:
        raise ParameterError(describe_errors(error, path, schema)) from None


def blocks_read_by(pipeline) -> list[str]:
    """The top-level parameter blocks a pipeline's nodes read (``params:a.b`` -> ``a``)."""
    return sorted({name.removeprefix("params:").split(".", 1)[0]
                   for name in pipeline.datasets() if name.startswith("params:")})


def _schema_at(path: str) -> Any:
    """The schema of parameter ``path``: a block, or a field inside one with its rules."""
    block, *keys = path.split(".")
    if block not in PARAMETER_BLOCKS:
        raise ParameterError(f"{block}: unknown parameter block; known: "
                             f"{', '.join(PARAMETER_BLOCKS)}")
    schema = PARAMETER_BLOCKS[block]
    for depth, key in enumerate(keys):
        model = model_in(schema)
        if model is None or key not in model.model_fields:
            raise ParameterError(f"{'.'.join([block, *keys[:depth + 1]])}: unknown key")
        info = model.model_fields[key]
        schema = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
    return schema
