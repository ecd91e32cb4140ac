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

from srgan_pipeline import resume, tracking
from srgan_pipeline.checkpoints import build_generator, checked_checkpoint, evaluated_weights
from srgan_pipeline.datasets import TorchCheckpointDataset
from srgan_pipeline.devices import pick_device, use_bf16_autocast
from srgan_pipeline.models import Critic, VGGPerceptualLoss
from srgan_pipeline.params import PhaseParams, TrainGanParams, validate_params
from srgan_pipeline.patches import StorePatchDataset, make_loader
from srgan_pipeline.training import pretrain, train_adversarial
from srgan_pipeline.training_store import TrainingStore

logger = logging.getLogger(__name__)



def pretrain_generator(
    train_store: TrainingStore, scale: int, train_gan: dict[str, Any],
) -> dict[str, Any]:
    """Phase 1: pixel + weighted VGG loss from scratch; returns the generator checkpoint."""
    settings = _check_settings(train_gan)
    cfg = settings.pretrain
    device = pick_device(settings.device)
    # Built even when phase 1 does not use it, so missing VGG weights stop the run now and
    # not after hours of pretraining, when phase 2 would need them.
    perceptual = _perceptual_loss(settings, device)
    generator_config = {"scale": scale, **settings.generator.model_dump()}
    generator = build_generator(generator_config, seed=cfg.seed)
    identity = resume.run_identity(
        "pretrain", cfg.model_dump(), generator=generator_config,
        perceptual=_perceptual_identity(settings, cfg),
        data=train_store.fingerprint())
    path = resume.checkpoint_path(settings.checkpoint_dir, "pretrain", identity)
    with resume.owned(path):
        start = _resume_from(settings, path, "pretrain", identity)
        batches = _batches(train_store, scale, cfg, settings, device, start)
        _log_run_settings("pretrain", device, perceptual, cfg, path)
        state = pretrain(generator.to(device), batches, perceptual, cfg, start=start,
                         on_log=_log_metrics, on_checkpoint=_checkpoint_writer(path, identity))
    return _finish("pretrain", state, identity)


def train_adversarial_gan(
    generator_pretrained: Callable[[], dict[str, Any]], train_store: TrainingStore, scale: int,
    train_gan: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Phase 2 from the pretrained generator; returns generator and critic checkpoints."""
    settings = _check_settings(train_gan)
    cfg = settings.adversarial
    pretrained = checked_checkpoint(generator_pretrained(), "generator_pretrained")
    device = pick_device(settings.device)
    perceptual = _perceptual_loss(settings, device) if cfg.perceptual_weight > 0 else None
    generator = build_generator(pretrained["generator_config"], seed=cfg.seed)
    critic = Critic(**settings.critic.model_dump())
    identity = resume.run_identity(
        "adversarial", cfg.model_dump(), generator=pretrained["generator_config"],
        critic=settings.critic.model_dump(), perceptual=_perceptual_identity(settings, cfg),
        data=train_store.fingerprint(),
        # Phase 2 belongs to the weights it starts from: a retrained or resumed phase 1
        # makes an older adversarial checkpoint another run's.
        started_from=resume.weights_fingerprint(evaluated_weights(pretrained)["generator"]))
    path = resume.checkpoint_path(settings.checkpoint_dir, "adversarial", identity)
    with resume.owned(path):
        own = _resume_from(settings, path, "adversarial", identity)
        batches = _batches(train_store, scale, cfg, settings, device, own)
        _log_run_settings("adversarial", device, perceptual, cfg, path)
        state = train_adversarial(
            generator.to(device), critic.to(device), batches, perceptual, cfg,
            start=own or pretrained, on_log=_log_metrics,
            on_checkpoint=_checkpoint_writer(path, identity),
        )
    state = _finish("adversarial", state, identity)
    critic_state = {key: state[key] for key in ("phase", "step", "critic", "optimizer_c",
                                                "config", "critic_config", "stopped_because",
                                                "run_identity", "mlflow_run_id")}
    return state, critic_state


def _check_settings(train_gan: dict[str, Any]) -> TrainGanParams:
    """The whole block, both phases, checked before either starts (params.TrainGanParams)."""
    return validate_params("train_gan", train_gan)


def _perceptual_loss(settings: TrainGanParams, device: torch.device) -> VGGPerceptualLoss:
    return VGGPerceptualLoss(layer=settings.perceptual.layer,
                             weights=settings.perceptual.weights).to(device)


def _perceptual_identity(settings: TrainGanParams, cfg: PhaseParams) -> dict[str, Any] | None:
    """The perceptual loss a phase trains with, for its run identity (None when unused)."""
    return settings.perceptual.model_dump() if cfg.perceptual_weight > 0 else None


def _batches(store, scale, cfg, settings, device, start):
    if store.scale != scale:
        raise ValueError(f"the training store at {store.folder} was written for x{store.scale}, "
                         f"but scale is {scale}: re-run data_prep "
                         "(kedro run --pipelines=data_prep)")
    dataset = StorePatchDataset(store, patch_size=cfg.patch_size)
    return make_loader(dataset, cfg.batch_size, settings.num_workers, cfg.seed, device,
                       start_batch=start["batches"] if start else 0)


def _resume_from(settings: TrainGanParams, path: Path, phase: str,
                 identity: dict[str, Any]) -> dict[str, Any] | None:
    """This run's in-progress checkpoint of ``phase`` when ``train_gan.resume`` is true."""
    if not settings.resume:
        if path.exists():
            logger.info("Starting %s afresh (train_gan.resume=false); %s will be overwritten",
                        phase, path)
        return None
    state = resume.load_own(path, _read_checkpoint, phase, identity)
    if state is not None:
        logger.info("Resuming %s from step %d (%s)", phase, state["step"], path)
        tracking.link_resumed(state.get("mlflow_run_id"))
    return state


def _read_checkpoint(path: Path) -> dict[str, Any]:
    return TorchCheckpointDataset(filepath=str(path)).load()()


def _provenance(identity: dict[str, Any]) -> dict[str, Any]:
    """Which run a state belongs to: saved with every checkpoint of the phase."""
    return {"run_identity": identity, "mlflow_run_id": tracking.run_id()}


def _checkpoint_writer(path: Path, identity: dict[str, Any]) -> Callable[[dict], None]:
    dataset = TorchCheckpointDataset(filepath=str(path))  # atomic: a kill keeps the last one

    def save(state: dict[str, Any]) -> None:
        dataset.save({**state, **_provenance(identity)})

    return save


def _log_metrics(step: int, metrics: dict[str, float]) -> None:
    tracking.log_metrics(metrics, step=step)  # once per window of log_every steps


def _log_run_settings(phase: str, device: torch.device, perceptual: VGGPerceptualLoss | None,
                      cfg: PhaseParams, path: Path) -> None:
    source = perceptual.weights_source if perceptual is not None else "unused"
    logger.info("%s on %s; perceptual weights: %s; in-progress checkpoint %s", phase, device,
                source, path)
    bf16 = use_bf16_autocast(cfg.amp_bf16, device)
    logger.info("%s: bf16 autocast %s (amp_bf16: %s)", phase, "on" if bf16 else "off",
                str(cfg.amp_bf16).lower())
    tracking.set_tags({f"{phase}.device": device, f"{phase}.perceptual_weights": source,
                       f"{phase}.channels_last": cfg.channels_last, f"{phase}.amp_bf16": bf16,
                       f"{phase}.in_progress_checkpoint": path})


def _finish(phase: str, state: dict[str, Any], identity: dict[str, Any]) -> dict[str, Any]:
    """The returned state with its provenance; why the phase stopped, and that state as an
    artifact of the MLflow run (this run's own state, never a file another run may rewrite).

    (kedro-mlflow's MlflowArtifactDataset cannot wrap a versioned dataset under Kedro 1.x: the
    wrapped dataset gets its own save version and the catalog refuses it.)
    """
    state = {**state, **_provenance(identity)}
    tracking.set_tags({f"{phase}.stopped_because": state["stopped_because"],
                       f"{phase}.final_step": state["step"],
                       f"{phase}.run_identity": identity["digest"]})
    tracking.log_state(state, f"checkpoints/{phase}.pt")
    return state
