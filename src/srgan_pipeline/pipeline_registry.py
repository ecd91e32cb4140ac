"""Project pipelines."""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline


def register_pipelines() -> dict[str, Pipeline]:
    """Every pipeline under ``pipelines/`` by its folder name.

    ``__default__`` (a plain ``kedro run``) prepares data, trains and evaluates. ``upscale`` is a
    tool applied to a user's own images, so it runs only when named.
    """
    pipelines = find_pipelines(raise_errors=True)
    # Kedro imports only the pipelines a run asks for; all of them when it asks for the default.
    if "__default__" in pipelines:
        pipelines["__default__"] = sum(
            (pipelines[name] for name in ("data_prep", "train_gan", "evaluation")), Pipeline([])
        )
    return pipelines
