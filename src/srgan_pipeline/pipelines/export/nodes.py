"""export node: the chosen generator written as files other tools load (docs/export.md)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import mlflow

from srgan_pipeline import tracking
from srgan_pipeline.checkpoints import CheckpointLoader, generator_from_checkpoint
from srgan_pipeline.exports import check_formats, export_generator, verification_photo
from srgan_pipeline.model_card import model_card
from srgan_pipeline.model_choice import chosen_checkpoint
from srgan_pipeline.names import GENERATOR_DATASETS
from srgan_pipeline.params import validate_params
from srgan_pipeline.serving.model import logged_card, slim_checkpoint, weights_digest
from srgan_pipeline.serving.registry import versions_of_weights

logger = logging.getLogger(__name__)

ARTIFACT_PATH = "exports"  # the MLflow run's artifact folder of the exported files


def export_model(generator_pretrained: CheckpointLoader, generator_gan: CheckpointLoader,
                 export: dict[str, Any], scale: int, serving: dict[str, Any]
                 ) -> dict[str, Any]:
    """Write ``export.formats`` of ``export.model`` into ``export.output_dir``; the report lists
    each file and its largest difference from the project's own fp32 upscale."""
    settings = validate_params("export", export)
    check_formats(settings.formats)  # before any checkpoint is read
    photo = verification_photo(settings.verify_image, validate_params("scale", scale))
    state = slim_checkpoint(chosen_checkpoint(settings.model, generator_pretrained,
                                              generator_gan)())
    digest = weights_digest(state)
    card = model_card(state, settings.model, _training(digest))
    name = settings.name or f"srgan_pipeline-{_short(settings.model)}"
    folder = Path(settings.output_dir)
    written = export_generator(generator_from_checkpoint(state), card, formats=settings.formats,
                               name=name, folder=folder, opset=settings.onnx_opset, photo=photo)
    report = {"model": settings.model, "output_dir": str(folder), "formats": written,
              "model_card": f"{name}.model_card.json", "onnx_opset": settings.onnx_opset}
    report["mlflow"] = _log_exports(folder, report, digest,
                                    validate_params("serving", serving).registry.model_name)
    return report


def _training(digest: str) -> list[dict[str, Any]] | None:
    """What these weights were trained on, as train_gan recorded it in their MLflow model's
    card (None where no model of them was logged in this experiment: the card says so)."""
    card = logged_card(digest) if tracking.active() else None
    training = (card or {}).get("training_data")
    return training if isinstance(training, list) else None


def _short(model: str) -> str:
    return model if model in GENERATOR_DATASETS else "generator"


def _log_exports(folder: Path, report: dict[str, Any], digest: str, registered: str | None
                 ) -> dict[str, Any]:
    """The files as artifacts of the run; the registered versions of these weights tagged
    with where they are (a version holds no files of its own besides its model)."""
    if not tracking.active():
        return {"logged": False}
    files = [f for entry in report["formats"].values() for f in entry["files"]]
    for file in [*files, report["model_card"]]:
        mlflow.log_artifact(str(folder / file), ARTIFACT_PATH)
    uri = f"runs:/{tracking.run_id()}/{ARTIFACT_PATH}"
    versions = []
    if registered:
        client = mlflow.MlflowClient()
        for version in versions_of_weights(client, registered, digest):
            client.set_model_version_tag(registered, version.version, "exports", uri)
            versions.append(int(version.version))
    logger.info("Logged the exports to %s (registered versions tagged: %s)", uri, versions)
    return {"logged": True, "artifacts": uri, "registered_versions": versions}
