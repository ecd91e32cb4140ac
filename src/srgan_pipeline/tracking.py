"""MLflow calls for the nodes, each a no-op when no run is active.

kedro-mlflow opens one MLflow run per ``kedro run`` (except for pipelines listed under
``disable_tracking`` in ``conf/*/mlflow.yml``); nodes add to it. Outside such a run (a unit
test, a notebook) the same nodes work and simply log nothing.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np


def active() -> bool:
    return mlflow.active_run() is not None


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    # One batched call: each MLflow call costs ~8 ms against the sqlite store.
    if active():
        mlflow.log_metrics(metrics, step=step)


def set_tags(tags: dict[str, object]) -> None:
    if active():
        mlflow.set_tags({key: str(value) for key, value in tags.items()})


def log_file(path: str | Path, artifact_path: str) -> None:
    if active():
        mlflow.log_artifact(str(path), artifact_path=artifact_path)


def log_image(image: np.ndarray, artifact_file: str) -> None:
    if active():
        mlflow.log_image(image, artifact_file=artifact_file)
