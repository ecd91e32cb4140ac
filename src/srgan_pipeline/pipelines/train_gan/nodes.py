"""train_gan nodes: phase 1 (SRResNet pretraining) and phase 2 (WGAN-GP adversarial training).

The loops live in ``srgan_pipeline.training``; these nodes build models and data from the
catalog and parameters, write resumable checkpoints while training and send metrics to the
MLflow run that kedro-mlflow opened for this ``kedro run``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from srgan_pipeline import tracking
from srgan_pipeline.datasets import TorchCheckpointDataset
from srgan_pipeline.models import Critic, VGGPerceptualLoss
from srgan_pipeline.patches import StorePatchDataset, make_loader
from srgan_pipeline.training import (
    TrainConfig,
    build_generator,
    pick_device,
    pretrain,
    train_adversarial,
)
from srgan_pipeline.training_store import TrainingStore

logger = logging.getLogger(__name__)

SETTINGS = ("device", "num_workers", "resume", "checkpoint_dir", "generator", "critic",
            "perceptual", "pretrain", "adversarial")


def pretrain_generator(
    train_store: TrainingStore, scale: int, train_gan: dict[str, Any],
) -> dict[str, Any]:
    """Phase 1: pixel + weighted VGG loss from scratch; returns the generator checkpoint."""
    settings = _check_settings(train_gan)
    cfg = TrainConfig.from_params(settings["pretrain"], "train_gan.pretrain")
    device = pick_device(settings["device"])
    # Built even when phase 1 does not use it, so missing VGG weights stop the run now and
    # not after hours of pretraining, when phase 2 would need them.
    perceptual = _perceptual_loss(settings, device)
    generator = build_generator({"scale": scale, **settings["generator"]}, seed=cfg.seed)
    start = _resume_from(settings, "pretrain")
    batches = _batches(train_store, scale, cfg, settings, device, start)
    _log_run_settings("pretrain", device, perceptual, cfg)
    state = pretrain(generator.to(device), batches, perceptual, cfg, start=start,
                     on_log=_log_metrics, on_checkpoint=_checkpoint_writer(settings, "pretrain"))
    _log_outcome("pretrain", state, settings)
    return state


def train_adversarial_gan(
    generator_pretrained: Callable[[], dict[str, Any]], train_store: TrainingStore, scale: int,
    train_gan: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Phase 2 from the pretrained generator; returns generator and critic checkpoints."""
    settings = _check_settings(train_gan)
    cfg = TrainConfig.from_params(settings["adversarial"], "train_gan.adversarial")
    pretrained = generator_pretrained()
    device = pick_device(settings["device"])
    perceptual = _perceptual_loss(settings, device) if cfg.perceptual_weight > 0 else None
    generator = build_generator(pretrained["generator_config"], seed=cfg.seed)
    critic = Critic(**settings["critic"])
    start = _resume_from(settings, "adversarial") or pretrained
    batches = _batches(train_store, scale, cfg, settings, device,
                       start if start["phase"] == "adversarial" else None)
    _log_run_settings("adversarial", device, perceptual, cfg)
    state = train_adversarial(
        generator.to(device), critic.to(device), batches, perceptual, cfg, start=start,
        on_log=_log_metrics, on_checkpoint=_checkpoint_writer(settings, "adversarial"),
    )
    _log_outcome("adversarial", state, settings)
    critic_state = {key: state[key] for key in ("phase", "step", "critic", "optimizer_c",
                                                "config", "stopped_because")}
    critic_state["critic_config"] = dict(settings["critic"])
    return state, critic_state


def _check_settings(train_gan: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(train_gan) - set(SETTINGS))
    missing = sorted(set(SETTINGS) - set(train_gan))
    if unknown or missing:
        raise ValueError(
            f"train_gan parameters: unknown {unknown or 'none'}, missing {missing or 'none'}; "
            f"expected exactly {list(SETTINGS)} (see conf/base/parameters_train_gan.yml)"
        )
    if not isinstance(train_gan["num_workers"], int) or train_gan["num_workers"] < 0:
        raise ValueError(f"train_gan.num_workers must be an integer >= 0, "
                         f"got {train_gan['num_workers']!r}")
    return train_gan


def _perceptual_loss(settings: dict[str, Any], device: torch.device) -> VGGPerceptualLoss:
    perceptual = settings["perceptual"]
    return VGGPerceptualLoss(layer=perceptual["layer"], weights=perceptual["weights"]).to(device)


def _batches(store, scale, cfg, settings, device, start):
    if store.scale != scale:
        raise ValueError(f"the training store at {store.folder} was written for x{store.scale}, "
                         f"but scale is {scale}: re-run data_prep "
                         "(kedro run --pipelines=data_prep)")
    dataset = StorePatchDataset(store, patch_size=cfg.patch_size)
    return make_loader(dataset, cfg.batch_size, settings["num_workers"], cfg.seed, device,
                       start_batch=start["batches"] if start else 0)


def _in_progress_path(settings: dict[str, Any], phase: str) -> str:
    return str(Path(settings["checkpoint_dir"]) / f"{phase}.pt")


def _resume_from(settings: dict[str, Any], phase: str) -> dict[str, Any] | None:
    """The in-progress checkpoint of ``phase`` when ``train_gan.resume`` is true."""
    path = _in_progress_path(settings, phase)
    checkpoint = TorchCheckpointDataset(filepath=path)
    if not settings["resume"]:
        if checkpoint.exists():
            logger.info("Starting %s afresh (train_gan.resume=false); %s will be overwritten",
                        phase, path)
        return None
    if not checkpoint.exists():
        logger.info("train_gan.resume=true but there is no %s checkpoint at %s: starting afresh",
                    phase, path)
        return None
    state = checkpoint.load()
    logger.info("Resuming %s from step %d (%s)", phase, state["step"], path)
    return state


def _checkpoint_writer(settings: dict[str, Any], phase: str) -> Callable[[dict], None]:
    # Atomic writes: a kill mid-write keeps the previous checkpoint.
    return TorchCheckpointDataset(filepath=_in_progress_path(settings, phase)).save


def _log_metrics(step: int, metrics: dict[str, float]) -> None:
    tracking.log_metrics(metrics, step=step)  # once per window of log_every steps


def _log_run_settings(phase: str, device: torch.device, perceptual: VGGPerceptualLoss | None,
                      cfg: TrainConfig) -> None:
    source = perceptual.weights_source if perceptual is not None else "unused"
    logger.info("%s on %s; perceptual weights: %s", phase, device, source)
    tracking.set_tags({f"{phase}.device": device, f"{phase}.perceptual_weights": source,
                       f"{phase}.channels_last": cfg.channels_last})


def _log_outcome(phase: str, state: dict[str, Any], settings: dict[str, Any]) -> None:
    """Why the phase stopped, and its final checkpoint as an artifact of the MLflow run.

    The loop always checkpoints its final state, so the in-progress file holds exactly what
    the node returns. (kedro-mlflow's MlflowArtifactDataset cannot wrap a versioned dataset
    under Kedro 1.x: the wrapped dataset gets its own save version and the catalog refuses it.)
    """
    tracking.set_tags({f"{phase}.stopped_because": state["stopped_because"],
                       f"{phase}.final_step": state["step"]})
    tracking.log_file(_in_progress_path(settings, phase), artifact_path="checkpoints")
