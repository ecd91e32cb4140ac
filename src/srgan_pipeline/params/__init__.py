"""The parameters of every pipeline: one pydantic model per top-level block of conf/*/parameters*.

Each block (``scale``, ``data_prep``, ``train_gan``, ``degradations``, ``evaluation``,
``upscale``, ``serving``, ``export``)
is checked by ``validate_params`` before any node runs (hooks.py) and again by the nodes that
read it (so they work outside Kedro too). Unknown keys are refused with the valid ones listed,
and every error names the full parameter path, e.g. ``upscale.imput_dir: unknown key; valid
keys: device, precision, tile, runtime, input_dir, model, max_pixels``. A rule that ties two
settings is checked with them: inside a block by its model, across blocks by
``rules_between_blocks``.

Defaults live in conf/base only: a pipeline key has no default here, so a missing key is an error
rather than a silent second default. The exceptions are documented optional keys (a source's
``path``/``url``/``size``/..., ``enabled``). Types are strict (``true`` is not a number, ``2.5`` is
not an integer, ``"1e-4"`` is not a number), as YAML and ``--params`` give typed values.

Pydantic does the work (already installed with MLflow). Each block's models are in the module of
its name (``data_prep.py`` for conf/base/parameters_data_prep.yml, ...), their value rules in
``rules.py``, and ``messages.py`` rewrites pydantic's errors so that they read as parameter
paths and expectations, not as Python types. This module validates: ``validate_params``.

This package sits at the bottom of the project: it imports pydantic, the name tables
(``srgan_pipeline.names``) and the architecture's sizes (``srgan_pipeline.architecture``), and
nothing else, so checking parameters loads no torch and no domain code (tests/test_layers.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from srgan_pipeline.params.data_prep import (
    ArchiveLimitsParams,
    DataPrepParams,
    SourceParams,
    Sources,
    TilesParams,
    clashing_source_names,
)
from srgan_pipeline.params.degradations import DegradationsParams, RealWorldParams, StageParams
from srgan_pipeline.params.evaluation import EvaluationParams, FiguresParams
from srgan_pipeline.params.export import ExportParams
from srgan_pipeline.params.inference import InferenceParams, TilePerPrecision
from srgan_pipeline.params.messages import describe_errors, model_in
from srgan_pipeline.params.rules import STRICT, Scale
from srgan_pipeline.params.serving import RegistryParams, ServingParams
from srgan_pipeline.params.train_gan import (
    AdversarialParams,
    CriticParams,
    DistributedParams,
    GeneratorParams,
    PerceptualParams,
    PhaseParams,
    PretrainParams,
    TrainGanParams,
)
from srgan_pipeline.params.upscale import UpscaleParams

__all__ = [
    "PARAMETER_BLOCKS",
    "AdversarialParams",
    "ArchiveLimitsParams",
    "CriticParams",
    "DataPrepParams",
    "DegradationsParams",
    "DistributedParams",
    "EvaluationParams",
    "ExportParams",
    "FiguresParams",
    "GeneratorParams",
    "InferenceParams",
    "ParameterError",
    "PerceptualParams",
    "PhaseParams",
    "PretrainParams",
    "RealWorldParams",
    "RegistryParams",
    "ServingParams",
    "SourceParams",
    "Sources",
    "StageParams",
    "TilePerPrecision",
    "TilesParams",
    "TrainGanParams",
    "UpscaleParams",
    "blocks_read_by",
    "clashing_source_names",
    "rules_between_blocks",
    "validate_params",
]


class ParameterError(ValueError):
    """Parameters that do not fit their schema; the message names each offending path."""


PARAMETER_BLOCKS: dict[str, Any] = {
    "scale": Scale,
    "data_prep": DataPrepParams,
    "train_gan": TrainGanParams,
    "degradations": DegradationsParams,
    "evaluation": EvaluationParams,
    "upscale": UpscaleParams,
    "serving": ServingParams,
    "export": ExportParams,
}


# --------------------------------------------------------------------------- validation


def validate_params(path: str, value: Any, *, scale: int | None = None,
                    schema: Any = None) -> Any:
    """``value`` checked against the schema of parameter ``path``; raises ParameterError.

    ``path`` is a block (``"train_gan"``) or a key inside one (``"data_prep.tiles"``,
    ``"data_prep.min_size"``), as a node receives it. ``scale`` enables the checks relative to
    the top-level ``scale`` (tile sizes, min_size, training crops). ``schema`` overrides the
    one found from ``path``, which then only names the value in messages. Returns the validated
    value: a frozen model for a block, the normalised value for a single key.
    """
    schema = _schema_at(path) if schema is None else schema
    # A model brings its own config; a single key (or a mapping of models) gets the same rules.
    config = None if isinstance(schema, type) and issubclass(schema, BaseModel) else STRICT
    try:
        return TypeAdapter(schema, config=config).validate_python(value, context={"scale": scale})
    except ValidationError as error:
        raise ParameterError(describe_errors(error, path, schema)) from None


def rules_between_blocks(blocks: Mapping[str, Any]) -> list[str]:
    """What breaks a rule that ties two blocks, one message each, among the validated blocks
    of a run (``{"scale": 4, "data_prep": DataPrepParams(...), ...}``).

    A rule applies when the run reads both of its blocks: a train_gan run alone trains on the
    store an earlier data_prep wrote, whatever the data_prep settings say now (the store's own
    tiles are checked as they are read: patches.PatchDataset).
    """
    errors = []
    if {"scale", "data_prep", "train_gan"} <= set(blocks):
        errors += _crops_fit_tiles(blocks["scale"], blocks["data_prep"], blocks["train_gan"])
    if {"data_prep", "evaluation", "serving"} <= set(blocks):  # evaluation registers
        errors += _registry_sets_prepared(blocks["data_prep"], blocks["serving"])
    if {"evaluation", "serving"} <= set(blocks):
        errors += _registry_metric_scored(blocks["evaluation"], blocks["serving"])
    return errors


def _registry_metric_scored(evaluation: EvaluationParams, serving: ServingParams) -> list[str]:
    # the champion is chosen on a metric the evaluation computes: LPIPS / NIQE only when set
    metric = serving.registry.metric
    if metric not in ("lpips", "niqe") or getattr(evaluation, metric) is not None:
        return []
    return [f"serving.registry.metric is {metric}, but evaluation.{metric} is null (not "
            f"scored): set evaluation.{metric}, or choose the champion on another metric"]


def _crops_fit_tiles(scale: int, data_prep: DataPrepParams, train_gan: TrainGanParams
                     ) -> list[str]:
    # data_prep keeps images down to min_size a side (cut to a multiple of the scale), and an
    # image side shorter than tiles.size is one tile of that side: each crop must fit in it.
    kept = -(-data_prep.min_size // scale) * scale
    tiles = data_prep.tiles.size
    smallest = min(tiles, kept)
    why, fix = ((f"data_prep.tiles.size={tiles}", "data_prep.tiles.size") if tiles <= kept else
                (f"data_prep.min_size={data_prep.min_size} keeps images of {kept} px a side, "
                 "each then one tile", "data_prep.min_size (smaller images are then skipped)"))
    return [f"train_gan.{phase}.patch_size ({patch}) is larger than the smallest tile data_prep "
            f"stores, {smallest} px ({why}): set the patch_size to {smallest} or less, or raise "
            f"{fix} to {patch} or more"
            for phase in ("pretrain", "adversarial")
            if (patch := getattr(train_gan, phase).patch_size) > smallest]


def _registry_sets_prepared(data_prep: DataPrepParams, serving: ServingParams) -> list[str]:
    # The champion is chosen on these sets' scores, after training and evaluation have run.
    prepared = sorted(name for name, source in (data_prep.eval_sets or {}).items()
                      if source.enabled)
    missing = sorted(set(serving.registry.sets or ()) - set(prepared))
    if not missing:
        return []
    return [f"serving.registry.sets names {missing}, which data_prep.eval_sets does not prepare "
            f"(it prepares {prepared}): add them to data_prep.eval_sets, or choose among those "
            "(null: every scored set)"]


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
