"""train_gan nodes: phase 1 (SRResNet pretraining) and phase 2 (WGAN-GP adversarial training).

Each node validates the ``train_gan`` block, builds the models and the phase's resume point
(``resume.ResumePoint``: its in-progress checkpoint, lock and writer), runs the phase as a
``training.job.Job`` (in this process, or in the data-parallel ranks it starts) and finishes
by recording the final state in the MLflow run that kedro-mlflow opened for this ``kedro run``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from srgan_pipeline import tracking
from srgan_pipeline.checkpoints import build_generator, checked_checkpoint
from srgan_pipeline.models import Critic
from srgan_pipeline.params import TrainGanParams, validate_params
from srgan_pipeline.resume import ResumePoint
from srgan_pipeline.training import job
from srgan_pipeline.training_store import TrainingStore

CRITIC_KEYS = ("phase", "step", "critic", "optimizer_c", "config", "critic_config",
               "stopped_because", "run_identity", "mlflow_run_id")  # the critic checkpoint


def pretrain_generator(
    train_store: TrainingStore, scale: int, train_gan: dict[str, Any],
) -> dict[str, Any]:
    """Phase 1: pixel + weighted VGG loss from scratch; returns the generator checkpoint."""
    settings = _check_settings(train_gan)
    device = job.training_device(settings)
    # Built even when phase 1 does not use it, so missing VGG weights stop the run now and
    # not after hours of pretraining, when phase 2 would need them.
    perceptual = job.perceptual_loss(settings, device)
    generator = build_generator({"scale": scale, **settings.generator.model_dump()},
                                seed=settings.pretrain.seed)
    point = ResumePoint.of("pretrain", settings, train_store, scale=scale)
    with point.held(on_resumed=tracking.link_resumed) as resumed:
        state = _train(job.Job("pretrain", settings, train_store, scale, generator, None,
                               perceptual, resumed, point.writer(tracking.run_id())), device, point)
    return _finish(point, state, settings)


def train_adversarial_gan(
    generator_pretrained: Callable[[], dict[str, Any]], train_store: TrainingStore, scale: int,
    train_gan: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Phase 2 from the pretrained generator; returns generator and critic checkpoints."""
    settings = _check_settings(train_gan)
    pretrained = checked_checkpoint(generator_pretrained(), "generator_pretrained")
    device = job.training_device(settings)
    perceptual = (job.perceptual_loss(settings, device)
                  if settings.adversarial.perceptual_weight > 0 else None)
    generator = build_generator(pretrained["generator_config"], seed=settings.adversarial.seed)
    critic = Critic(**settings.critic.model_dump())
    point = ResumePoint.of("adversarial", settings, train_store, pretrained=pretrained)
    with point.held(on_resumed=tracking.link_resumed) as resumed:
        state = _train(job.Job("adversarial", settings, train_store, scale, generator, critic,
                               perceptual, resumed or pretrained,
                               point.writer(tracking.run_id())), device, point)
    state = _finish(point, state, settings)
    return state, {key: state[key] for key in CRITIC_KEYS}


def _check_settings(train_gan: dict[str, Any]) -> TrainGanParams:
    """The whole block, both phases, checked before either starts (params.TrainGanParams)."""
    return validate_params("train_gan", train_gan)


def _train(training: job.Job, device: torch.device, point: ResumePoint) -> dict[str, Any]:
    """The phase trained, its settings and metrics sent to this node's MLflow run."""
    tracking.set_tags(job.announce(training, device, point.path))
    run = tracking.run_id()
    # Data-parallel rank 0 is a process of its own, without the active run: it logs by its id.
    on_rank_log = tracking.RunMetrics(run, tracking.tracking_uri()) if run else None
    return job.train(training, device, on_log=_log_metrics, on_rank_log=on_rank_log)


def _log_metrics(step: int, metrics: dict[str, float]) -> None:
    tracking.log_metrics(metrics, step=step)  # once per window of log_every steps


def _finish(point: ResumePoint, state: dict[str, Any], settings: TrainGanParams
            ) -> dict[str, Any]:
    """The returned state with its provenance; why the phase stopped, and that state as an
    artifact of the MLflow run (this run's own state, never a file another run may rewrite).

    (kedro-mlflow's MlflowArtifactDataset cannot wrap a versioned dataset under Kedro 1.x: the
    wrapped dataset gets its own save version and the catalog refuses it.)
    """
    state, phase = point.stamped(state, tracking.run_id()), point.phase
    if settings.distributed.node_rank > 0:  # node 0's run records it
        return state
    tracking.set_tags({f"{phase}.stopped_because": state["stopped_because"],
                       f"{phase}.final_step": state["step"],
                       f"{phase}.run_identity": point.identity["digest"]})
    tracking.log_state(state, f"checkpoints/{phase}.pt")
    return state
