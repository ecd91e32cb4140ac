"""Kedro nodes: train_gan logs its generators as MLflow models; evaluation registers them.

Both do nothing outside an MLflow run (a unit test, a notebook), as :mod:`..tracking` does.
"""

from __future__ import annotations

import logging
from typing import Any

import mlflow

from srgan_pipeline import tracking
from srgan_pipeline.checkpoints import GENERATOR_DATASETS, Checkpoint, generator_checkpoint
from srgan_pipeline.serving.model import log_generator_model
from srgan_pipeline.serving.params import ServingParams, validate_serving
from srgan_pipeline.serving.registry import register_version, set_champion

logger = logging.getLogger(__name__)



def log_generator_models(generator_pretrained: Checkpoint, generator_gan: Checkpoint,
                         serving: dict[str, Any]) -> None:
    """Log both phases' generators as MLflow models of this run (see ``serving.log_models``)."""
    settings = validate_serving(serving)
    if not settings.log_models or not tracking.active():
        return
    for kind in GENERATOR_DATASETS:
        checkpoint = generator_checkpoint(kind, generator_pretrained, generator_gan)
        uri, _ = log_generator_model(checkpoint(), kind=kind, **_model_settings(settings))
        logger.info("Logged the %s generator as MLflow model %s", kind, uri)


def register_generators(generator_pretrained: Checkpoint, generator_gan: Checkpoint,
                        evaluation_summary: dict[str, Any], serving: dict[str, Any]
                        ) -> dict[str, Any]:
    """Register every scored generator and point the alias at the best: a report of both."""
    settings = validate_serving(serving)
    name, alias, metric = (settings.registry.model_name, settings.registry.alias,
                           settings.registry.metric)
    sets = _scored_sets(settings.registry.sets, evaluation_summary)
    rule = f"mean {metric} over {' '.join(sets)}"
    report: dict[str, Any] = {"model_name": name, "alias": alias, "score_rule": rule,
                              "registered": [], "champion": None}
    if not name or not tracking.active():
        report["skipped_because"] = ("serving.registry.model_name is null" if not name
                                     else "no MLflow run is active")
        return report
    client = mlflow.MlflowClient()
    scored = [kind for kind in GENERATOR_DATASETS
              if all(kind in evaluation_summary[s] for s in sets)]
    for kind in scored:
        checkpoint = generator_checkpoint(kind, generator_pretrained, generator_gan)
        uri, digest = log_generator_model(checkpoint(), kind=kind, **_model_settings(settings))
        score = sum(evaluation_summary[s][kind][metric] for s in sets) / len(sets)
        version = register_version(client, name, uri, {
            "weights_sha256": digest, "model": kind, "score": f"{score:.6f}",
            "score_rule": rule, "scored_in_run": mlflow.active_run().info.run_id})
        report["registered"].append({"model": kind, "version": int(version.version),
                                     "score": score, "model_uri": uri})
    best = set_champion(client, name, alias, rule)
    if best is not None:
        report["champion"] = {"version": int(best.version), "model": best.tags.get("model"),
                              "score": float(best.tags["score"]),
                              "uri": f"models:/{name}@{alias}"}
        logger.info("%s: %s -> version %s (%s %s = %s)", name, alias, best.version,
                    best.tags.get("model"), rule, best.tags["score"])
    return report


def _model_settings(settings: ServingParams) -> dict[str, Any]:
    return {"max_pixels": settings.max_pixels, "tile": settings.tile}


def _scored_sets(sets: tuple[str, ...] | None, summary: dict[str, Any]) -> list[str]:
    sets = sorted(sets or summary)
    missing = sorted(set(sets) - set(summary))
    if missing:
        raise ValueError(f"serving.registry.sets: {missing} not scored in this evaluation "
                         f"(scored: {sorted(summary)})")
    return sets
