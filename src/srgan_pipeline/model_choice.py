"""The checkpoint a ``model`` setting names (``upscale.model``, ``export.model``)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from srgan_pipeline.checkpoints import CheckpointLoader, generator_checkpoint
from srgan_pipeline.names import GENERATOR_DATASETS

__all__ = ["chosen_checkpoint"]


def chosen_checkpoint(model: str, generator_pretrained: CheckpointLoader,
                      generator_gan: CheckpointLoader) -> Callable[[], dict[str, Any]]:
    """The loader of ``srresnet`` or ``srgan`` (the train_gan outputs), else of an MLflow model
    URI (the schemas allow no other)."""
    if model in GENERATOR_DATASETS:
        return generator_checkpoint(model, generator_pretrained, generator_gan)
    # MLflow only for a model URI: importing it takes seconds (srgan-pipeline upscale's start)
    from srgan_pipeline.serving.registry import load_model_checkpoint

    return partial(load_model_checkpoint, model)
