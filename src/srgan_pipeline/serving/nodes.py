"""Kedro nodes: train_gan logs its generators as MLflow models; evaluation registers them.

Both do nothing outside an MLflow run (a unit test, a notebook), as :mod:`..tracking` does.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import mlflow

from srgan_pipeline import tracking
from srgan_pipeline.checkpoints import CheckpointLoader, generator_checkpoint
from srgan_pipeline.evaluation import group_pairs
from srgan_pipeline.model_card import training_data
from srgan_pipeline.names import GENERATOR_DATASETS, METRIC_DIRECTIONS
from srgan_pipeline.params import ServingParams, validate_params
from srgan_pipeline.serving.model import log_generator_model
from srgan_pipeline.serving.registry import (
    SCORE_SOURCES,
    register_version,
    scored_versions,
    set_champion,
    set_score_tag,
)
from srgan_pipeline.training_store import TrainingStore

logger = logging.getLogger(__name__)


def log_generator_models(generator_pretrained: CheckpointLoader, generator_gan: CheckpointLoader,
                         train_store: TrainingStore, serving: dict[str, Any]) -> None:
    """Log both phases' generators as MLflow models of this run (see ``serving.log_models``),
    their model cards naming the sources of ``train_store``, which both phases trained on."""
    settings = validate_params("serving", serving)
    if not settings.log_models or not tracking.active():
        return
    training = training_data(train_store.tiles_per_source())
    for model in GENERATOR_DATASETS:
        checkpoint = generator_checkpoint(model, generator_pretrained, generator_gan)
        uri, _ = log_generator_model(checkpoint(), model=model, training=training,
                                     **_model_settings(settings))
        logger.info("Logged the %s generator as MLflow model %s", model, uri)


def register_generators(generator_pretrained: CheckpointLoader, generator_gan: CheckpointLoader,
                        evaluation_summary: dict[str, Any], eval_pairs: dict[str, Any],
                        scale: int, serving: dict[str, Any]) -> dict[str, Any]:
    """Register every scored generator and point the alias at the best: a report of both.

    Only a score on every image of the sets counts for the alias (``eval_pairs`` tells how
    many there are): a subset evaluation records ``subset_*`` tags and leaves the alias alone.
    """
    settings = validate_params("serving", serving)
    name, alias, metric = (settings.registry.model_name, settings.registry.alias,
                           settings.registry.metric)
    sets = _scored_sets(settings.registry.sets, evaluation_summary)
    direction = METRIC_DIRECTIONS[metric]
    # the direction is part of the rule: versions compete only under the same one
    rule = f"mean {metric} over {' '.join(sets)}" + (", lower is better"
                                                     if direction == "lower" else "")
    report: dict[str, Any] = {"model_name": name, "alias": alias, "score_rule": rule,
                              "sets": sets, "registered": [], "champion": None}
    if not name or not tracking.active():
        report["skipped_because"] = ("serving.registry.model_name is null" if not name
                                     else "no MLflow run is active")
        return report
    client = mlflow.MlflowClient()
    full, scored_on = _coverage(evaluation_summary, sets, group_pairs(eval_pairs, scale))
    bicubic = _mean(evaluation_summary, sets, "bicubic", metric)
    for model in [m for m in GENERATOR_DATASETS if all(m in evaluation_summary[s] for s in sets)]:
        score = _mean(evaluation_summary, sets, model, metric)
        prefix = "" if full else "subset_"
        tags = (_score_tags(score, bicubic, rule, scored_on, full)
                | {prefix + "score_direction": direction}
                | _set_score_tags(evaluation_summary, sets, model, prefix))
        report["registered"].append(_register(client, name, model, tags, settings, score,
                                              generator_checkpoint(model, generator_pretrained,
                                                                   generator_gan)))
    if not full:
        report["champion_unchanged_because"] = (f"scored on a subset ({scored_on} images): only "
                                                f"full-set scores move @{alias}")
        logger.warning("%s: %s, not all images: the scores are recorded as subset_score "
                       "tags and @%s is left as it is", name, scored_on, alias)
        return report
    _report_champion(report, set_champion(client, name, alias, rule, direction), bicubic)
    return report


def _coverage(summary: dict[str, Any], sets: list[str], pairs: dict[str, dict]
              ) -> tuple[bool, str]:
    """Whether every model was scored on every image of ``sets``, and e.g. ``a=1/2 b=5/5``."""
    scored = {s: min(row["images"] for row in summary[s].values()) for s in sets}
    full = all(scored[s] == len(pairs.get(s, {})) for s in sets)
    return full, " ".join(f"{s}={scored[s]}/{len(pairs.get(s, {}))}" for s in sets)


def _mean(summary: dict[str, Any], sets: list[str], model: str, metric: str) -> float | None:
    if not all(model in summary[s] for s in sets):
        return None
    return sum(summary[s][model][metric] for s in sets) / len(sets)


def _score_tags(score: float, bicubic: float | None, rule: str, scored_on: str,
                full: bool) -> dict[str, str]:
    """The version tags of one score: ``score``/``score_rule``/``bicubic_score`` for a full-set
    score; ``subset_*`` for a subset, so that it never overwrites a full-set score."""
    prefix = "" if full else "subset_"
    tags = {f"{prefix}score": f"{score:.6f}", f"{prefix}score_rule": rule,
            f"{prefix}scored_images": scored_on,
            f"{prefix}scored_in_run": mlflow.active_run().info.run_id}
    if bicubic is not None:  # not scored in this run: an earlier full-set value stays
        tags[f"{prefix}bicubic_score"] = f"{bicubic:.6f}"
    return tags


def _set_score_tags(summary: dict[str, Any], sets: list[str], model: str,
                    prefix: str) -> dict[str, str]:
    """``model``'s mean of every metric on each set of the rule (``psnr_y.<set>``,
    ``lpips.<set>``; NIQE of a set with no NIQE block left out) and what LPIPS / NIQE were
    computed with: the perception-distortion figure places the version by them."""
    rows = {s: summary[s][model] for s in sets}
    tags = {set_score_tag(metric, s, prefix): f"{row[metric]:.6f}" for s, row in rows.items()
            for metric in METRIC_DIRECTIONS if math.isfinite(row.get(metric, math.nan))}
    for source in SCORE_SOURCES:  # one value in one evaluation: every set ran the same metric
        values = sorted({row[source] for row in rows.values() if source in row})
        if values:
            tags[prefix + source] = " ".join(values)
    return tags


def _register(client: mlflow.MlflowClient, name: str, model: str, tags: dict[str, str],
              settings: ServingParams, score: float, checkpoint: CheckpointLoader
              ) -> dict[str, Any]:
    uri, digest = log_generator_model(checkpoint(), model=model, **_model_settings(settings))
    version = register_version(client, name, uri, {"weights_sha256": digest, "model": model,
                                                   **tags},
                               scores_prefix="" if "score" in tags else "subset_")
    return {"model": model, "version": int(version.version), "score": score,
            "scored_on_full_sets": "score" in tags, "model_uri": uri}


def _report_champion(report: dict[str, Any], best, bicubic: float | None) -> None:
    name, alias, rule = report["model_name"], report["alias"], report["score_rule"]
    if best is None:
        report["no_champion_because"] = (
            f"no version scored by {rule} beats bicubic"
            + (f" ({bicubic:.4f})" if bicubic is not None else
               " (bicubic was not scored: add it to evaluation.models)"))
        logger.warning("%s: @%s not set: %s", name, alias, report["no_champion_because"])
        return
    report["champion"] = {"version": int(best.version), "model": best.tags.get("model"),
                          "score": float(best.tags["score"]),
                          "bicubic_score": float(best.tags["bicubic_score"]),
                          "uri": f"models:/{name}@{alias}"}
    logger.info("%s: %s -> version %s (%s %s = %s, bicubic %s)", name, alias, best.version,
                best.tags.get("model"), rule, best.tags["score"], best.tags["bicubic_score"])


def _model_settings(settings: ServingParams) -> dict[str, Any]:
    return {"max_pixels": settings.max_pixels, "tile": settings.tile}


def _scored_sets(sets: tuple[str, ...] | None, summary: dict[str, Any]) -> list[str]:
    sets = sorted(sets or summary)
    missing = sorted(set(sets) - set(summary))
    if missing:
        raise ValueError(f"serving.registry.sets: {missing} not scored in this evaluation "
                         f"(scored: {sorted(summary)})")
    return sets


def compared_versions(model_registry_report: dict[str, Any]) -> dict[str, Any]:
    """The registry that ``register_generators`` reported on, as the perception-distortion
    figure reads it (``evaluation.perception_distortion_points``): its versions with their
    per-set scores, which of them this evaluation registered, and why none may be shown (no
    registry, no MLflow run, or a subset evaluation, whose means are not the full sets')."""
    report = model_registry_report
    registry = {key: report.get(key) for key in ("model_name", "alias", "score_rule", "sets")}
    registry["evaluated"] = {row["model"]: row["version"] for row in report["registered"]}
    registry["versions"] = []
    if "skipped_because" in report:
        return registry | {"not_shown_because": report["skipped_because"]}
    if "champion_unchanged_because" in report:
        registry["not_shown_because"] = ("this evaluation scored a subset: the registered "
                                         "versions' scores are over the full sets")
    registry["versions"] = scored_versions(mlflow.MlflowClient(), report["model_name"])
    return registry
