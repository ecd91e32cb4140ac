"""The Model Registry side: register scored generators, alias the best, read one back.

MLflow stages are deprecated (2.9): the best version carries an alias (``champion``) instead,
and ``models:/<name>@<alias>`` always means the version the alias points at now.

Which version is "best": each registered version carries tags ``score`` and ``score_rule``
(e.g. ``mean psnr_y over skimage_heldout``; ``mean lpips over urban100, lower is better``)
and ``score_direction`` (``higher`` or ``lower``), written only by an evaluation of the *full* sets,
and ``bicubic_score``, bicubic's score under the same rule in that evaluation. The alias goes to
the highest score among the versions scored by the same rule as this evaluation (scores on
other sets or metrics are not comparable) that beat bicubic: a generator worse than the
interpolation it is meant to replace is never served as the best. A subset evaluation
(``evaluation.images_per_set``) records ``subset_*`` tags only, so a screening run can neither
overwrite a full-set score nor move the alias. A generator is registered once (tag
``weights_sha256``); scoring it again updates its tags.

Beside the mean, each version carries the per-set means of that same evaluation, one tag per
metric and set (``psnr_y.<set>``, ``lpips.<set>``, ...: :func:`set_score_tag`), and what LPIPS
and NIQE were computed with (``lpips_weights``, e.g. ``alex/random``: NOT LPIPS; ``niqe_model``),
so that the perception-distortion figure can place every compared version beside a new one.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import mlflow
import torch
from mlflow.entities.model_registry import ModelVersion

from srgan_pipeline.names import METRIC_DIRECTIONS
from srgan_pipeline.serving.model import ARTIFACT

__all__ = ["SCORE_SOURCES", "beats_bicubic", "describe_versions", "load_model_checkpoint",
           "register_version", "scored_versions", "set_champion", "set_score_tag",
           "versions_of_weights"]

# What a version's per-set LPIPS / NIQE tags were computed with (evaluation's columns of them)
SCORE_SOURCES = ("lpips_weights", "niqe_model")


def set_score_tag(metric: str, eval_set: str, prefix: str = "") -> str:
    """The version tag of one metric's mean over one set: ``psnr_y.urban100``; ``prefix``
    ``subset_`` for a subset evaluation's."""
    return f"{prefix}{metric}.{eval_set}"


def is_score_tag(key: str, prefix: str = "") -> bool:
    """Whether ``key`` is a per-set score tag (:func:`set_score_tag`) or one of their
    :data:`SCORE_SOURCES` under ``prefix``: the tags one evaluation writes together."""
    if not key.startswith(prefix):
        return False
    metric, dot, _ = key.removeprefix(prefix).partition(".")
    return (bool(dot) and metric in METRIC_DIRECTIONS) or key.removeprefix(prefix) in SCORE_SOURCES


def register_version(client: mlflow.MlflowClient, name: str, model_uri: str,
                     tags: dict[str, str], scores_prefix: str | None = None) -> ModelVersion:
    """Register ``model_uri`` under ``name`` (once per weights digest); its tags updated.

    ``scores_prefix`` (``""`` full-set, ``subset_``): the version's per-set score tags under
    it are replaced as a whole (:func:`is_score_tag`): an earlier evaluation's score of another
    set, or of a metric not scored now, would otherwise pass for this one's.
    """
    digest = tags["weights_sha256"]
    existing = versions_of_weights(client, name, digest)
    if not existing:
        return mlflow.register_model(model_uri, name, tags=tags)
    version = existing[0]
    for key, value in tags.items():
        client.set_model_version_tag(name, version.version, key, value)
    for key in version.tags.keys() - tags.keys():
        if scores_prefix is not None and is_score_tag(key, scores_prefix):
            client.delete_model_version_tag(name, version.version, key)
    return client.get_model_version(name, version.version)


def set_champion(client: mlflow.MlflowClient, name: str, alias: str, score_rule: str,
                 direction: str = "higher") -> ModelVersion | None:
    """Point ``alias`` at the best-scoring version under ``score_rule`` that beats bicubic
    (newest on ties); None when no version qualifies. ``direction``: whether a ``higher``
    (PSNR, SSIM) or a ``lower`` (LPIPS, NIQE) score is better.

    With none qualifying, an alias left on a version this rule now finds below bicubic is
    removed (it would keep serving it); an alias on a version of another rule is left alone.
    """
    versions = client.search_model_versions(f"name = '{name}'")
    if not versions:  # nothing registered yet (e.g. bicubic scored alone): no model, no alias
        return None
    fit = [v for v in versions if v.tags.get("score_rule") == score_rule and beats_bicubic(v)]
    if not fit:
        _drop_unfit_alias(client, name, alias, score_rule)
        return None
    sign = -1.0 if direction == "lower" else 1.0
    best = max(fit, key=lambda v: (sign * float(v.tags["score"]), int(v.version)))
    client.set_registered_model_alias(name, alias, best.version)
    return best


def beats_bicubic(version: ModelVersion) -> bool:
    """Whether the version's full-set score is better than bicubic's under the same rule: above
    it, or below it where the tag ``score_direction`` is ``lower`` (a version without
    ``bicubic_score``, e.g. scored without bicubic, cannot show that it is)."""
    try:
        score, bicubic = float(version.tags["score"]), float(version.tags["bicubic_score"])
    except (KeyError, ValueError):
        return False
    return score < bicubic if version.tags.get("score_direction") == "lower" else score > bicubic


def _drop_unfit_alias(client: mlflow.MlflowClient, name: str, alias: str, score_rule: str):
    holder = client.get_registered_model(name).aliases.get(alias)
    if holder is None:
        return
    version = client.get_model_version(name, holder)
    if version.tags.get("score_rule") == score_rule and not beats_bicubic(version):
        client.delete_registered_model_alias(name, alias)


def load_model_checkpoint(model_uri: str) -> dict[str, Any]:
    """The generator checkpoint inside a logged model (``models:/name@alias``, ``runs:/...``).

    Reads the weights file only (``torch.load(weights_only=True)``): no model code runs.
    """
    try:
        weights = _weights_uri(model_uri)
        with tempfile.TemporaryDirectory() as tmp:
            path = mlflow.artifacts.download_artifacts(artifact_uri=weights, dst_path=tmp)
            if not Path(path).is_file():
                raise ValueError(f"{model_uri} is not a generator model of this project "
                                 f"(it has no artifacts/{ARTIFACT}.pt)")
            return torch.load(path, map_location="cpu", weights_only=True)
    except mlflow.exceptions.MlflowException as error:
        reason = error.message.rstrip(".")
        raise ValueError(f"cannot load the model {model_uri} from the MLflow store "
                         f"{mlflow.get_tracking_uri()}: {reason}. List the registered versions "
                         f"and aliases with `mlflow ui` or the try-it page") from error


def versions_of_weights(client: mlflow.MlflowClient, name: str, digest: str) -> list[ModelVersion]:
    """The registered versions of ``name`` that hold the weights of sha256 ``digest``."""
    return [v for v in client.search_model_versions(f"name = '{name}'")
            if v.tags.get("weights_sha256") == digest]


def _weights_uri(model_uri: str) -> str:
    model_id = model_uri.removeprefix("models:/")
    if model_uri.startswith("models:/") and "/" not in model_id and "@" not in model_id:
        # a logged model's id (models:/m-...): MLflow resolves no sub-path under it
        return f"{mlflow.get_logged_model(model_id).artifact_location}/artifacts/{ARTIFACT}.pt"
    return f"{model_uri.rstrip('/')}/artifacts/{ARTIFACT}.pt"


def describe_versions(client: mlflow.MlflowClient, name: str) -> list[dict[str, Any]]:
    """Every version of ``name``, newest first: its aliases, model (srresnet, srgan), score."""
    versions = sorted(client.search_model_versions(f"name = '{name}'"),
                      key=lambda v: -int(v.version))
    aliases: dict[int, list[str]] = {}  # search_model_versions leaves ModelVersion.aliases empty
    for alias, version in client.get_registered_model(name).aliases.items():
        aliases.setdefault(int(version), []).append(alias)
    return [{"version": int(v.version), "aliases": sorted(aliases.get(int(v.version), [])),
             "model": v.tags.get("model"), "score": v.tags.get("score"),
             "score_rule": v.tags.get("score_rule")} for v in versions]


def scored_versions(client: mlflow.MlflowClient, name: str) -> list[dict[str, Any]]:
    """Every version of ``name``, oldest first, as the perception-distortion figure reads it:
    ``version``, ``model``, ``aliases``, its full-set ``score_rule`` (None if it has none),
    ``scores`` (``{set: {metric: mean}}`` from its per-set tags; empty for a version registered
    before those were written) and the :data:`SCORE_SOURCES` it records."""
    versions = sorted(client.search_model_versions(f"name = '{name}'"),
                      key=lambda v: int(v.version))
    aliases: dict[int, list[str]] = {}  # search_model_versions leaves ModelVersion.aliases empty
    for alias, version in (client.get_registered_model(name).aliases if versions else {}).items():
        aliases.setdefault(int(version), []).append(alias)
    described = []
    for version in versions:
        scores: dict[str, dict[str, float]] = {}
        for key, value in version.tags.items():
            if is_score_tag(key) and key not in SCORE_SOURCES:
                metric, _, eval_set = key.partition(".")
                scores.setdefault(eval_set, {})[metric] = float(value)
        described.append({"version": int(version.version), "model": version.tags.get("model"),
                          "aliases": sorted(aliases.get(int(version.version), [])),
                          "score_rule": version.tags.get("score_rule"), "scores": scores,
                          **{s: version.tags.get(s) for s in SCORE_SOURCES}})
    return described
