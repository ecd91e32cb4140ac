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
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import mlflow
import torch
from mlflow.entities.model_registry import ModelVersion

from srgan_pipeline.serving.model import ARTIFACT

__all__ = ["beats_bicubic", "describe_versions", "load_model_checkpoint",
           "register_version", "set_champion", "versions_of_weights"]


def register_version(client: mlflow.MlflowClient, name: str, model_uri: str,
                     tags: dict[str, str]) -> ModelVersion:
    """Register ``model_uri`` under ``name`` (once per weights digest); its tags updated."""
    digest = tags["weights_sha256"]
    existing = versions_of_weights(client, name, digest)
    if existing:
        version = existing[0]
        for key, value in tags.items():
            client.set_model_version_tag(name, version.version, key, value)
        return client.get_model_version(name, version.version)
    return mlflow.register_model(model_uri, name, tags=tags)


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
