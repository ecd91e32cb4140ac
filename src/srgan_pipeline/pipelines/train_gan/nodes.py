"""train_gan nodes: phase 1 (SRResNet pretraining) and phase 2 (WGAN-GP adversarial training).

The loops live in ``srgan_pipeline.training``; these nodes build models and data from the
catalog and parameters, write resumable checkpoints while training and send metrics to the
MLflow run that kedro-mlflow opened for this ``kedro run``.

With ``train_gan.distributed.nproc_per_node`` > 1 a node starts the training processes itself
(``training.distributed.launch``) and waits for them: each rank builds its shard of the batches
and trains; rank 0 logs to this run's MLflow run (by its id), writes the checkpoints and hands
the final state back, which the node returns to Kedro as in one process.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import errno
import hashlib
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
from srgan_pipeline.training import distributed, pretrain, train_adversarial
from srgan_pipeline.training.distributed import SINGLE, World
from srgan_pipeline.training_store import StoreError, TrainingStore

logger = logging.getLogger(__name__)

def pretrain_generator(
    train_store: TrainingStore, scale: int, train_gan: dict[str, Any],
) -> dict[str, Any]:
    """Phase 1: pixel + weighted VGG loss from scratch; returns the generator checkpoint."""
    settings = _check_settings(train_gan)
    cfg = settings.pretrain
    device = pick_device(settings.device)
    distributed.check(settings.distributed, device)
    # Built even when phase 1 does not use it, so missing VGG weights stop the run now and
    # not after hours of pretraining, when phase 2 would need them.
    perceptual = _perceptual_loss(settings, _build_device(settings, device))
    generator = build_generator({"scale": scale, **settings.generator.model_dump()},
                                seed=cfg.seed)
    identity = phase_identity("pretrain", settings, train_store, scale)
    path = resume.checkpoint_path(settings.checkpoint_dir, "pretrain", identity)
    with _owned(settings, path):
        start = _resume_from(settings, path, "pretrain", identity, train_store)
        _log_run_settings("pretrain", device, perceptual, cfg, path, settings)
        state = _train(_Training("pretrain", settings, cfg, train_store, scale, generator, None,
                                 perceptual, start, path, identity, tracking.run_id()), device)
    return _finish("pretrain", state, identity, settings)


def train_adversarial_gan(
    generator_pretrained: Callable[[], dict[str, Any]], train_store: TrainingStore, scale: int,
    train_gan: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Phase 2 from the pretrained generator; returns generator and critic checkpoints."""
    settings = _check_settings(train_gan)
    cfg = settings.adversarial
    pretrained = checked_checkpoint(generator_pretrained(), "generator_pretrained")
    device = pick_device(settings.device)
    distributed.check(settings.distributed, device)
    perceptual = (_perceptual_loss(settings, _build_device(settings, device))
                  if cfg.perceptual_weight > 0 else None)
    generator = build_generator(pretrained["generator_config"], seed=cfg.seed)
    critic = Critic(**settings.critic.model_dump())
    identity = phase_identity("adversarial", settings, train_store, pretrained=pretrained)
    path = resume.checkpoint_path(settings.checkpoint_dir, "adversarial", identity)
    with _owned(settings, path):
        own = _resume_from(settings, path, "adversarial", identity, train_store)
        _log_run_settings("adversarial", device, perceptual, cfg, path, settings)
        state = _train(_Training("adversarial", settings, cfg, train_store, scale, generator,
                                 critic, perceptual, own or pretrained, path, identity,
                                 tracking.run_id()), device)
    state = _finish("adversarial", state, identity, settings)
    critic_state = {key: state[key] for key in ("phase", "step", "critic", "optimizer_c",
                                                "config", "critic_config", "stopped_because",
                                                "run_identity", "mlflow_run_id")}
    return state, critic_state


def phase_identity(phase: str, settings: TrainGanParams, store: TrainingStore,
                   scale: int | None = None, pretrained: dict[str, Any] | None = None
                   ) -> dict[str, Any]:
    """The run identity of ``phase`` (resume.run_identity): its settings, the architecture,
    the perceptual loss, the training data and, for phase 2, the ``pretrained`` checkpoint it
    starts from (phase 1 needs the ``scale`` instead)."""
    cfg = getattr(settings, phase)
    parts = {"perceptual": _perceptual_identity(settings, cfg), "data": store.fingerprint()}
    if phase == "pretrain":
        parts["generator"] = {"scale": scale, **settings.generator.model_dump()}
    else:
        parts |= {
            "generator": pretrained["generator_config"], "critic": settings.critic.model_dump(),
            # Phase 2 belongs to the weights it starts from: a retrained or resumed phase 1
            # makes an older adversarial checkpoint another run's.
            "started_from": resume.weights_fingerprint(
                evaluated_weights(pretrained)["generator"])}
    return resume.run_identity(phase, cfg.model_dump(), **parts)


@dataclasses.dataclass(frozen=True)
class _Training:
    """What a training process needs (picklable: sent to each rank as it starts)."""

    phase: str
    settings: TrainGanParams
    cfg: PhaseParams
    store: TrainingStore
    scale: int
    generator: torch.nn.Module
    critic: torch.nn.Module | None
    perceptual: VGGPerceptualLoss | None
    start: dict[str, Any] | None  # resume state, or (phase 2) the pretrained generator
    path: Path  # the in-progress checkpoint
    identity: dict[str, Any]
    mlflow_run_id: str | None


def _train(job: _Training, device: torch.device) -> dict[str, Any]:
    """Train in this process (nproc_per_node 1), or start the ranks and wait for them."""
    spread = job.settings.distributed
    if spread.world_size == 1:
        return _train_here(SINGLE, job, device, on_log=_log_metrics)
    results = distributed.launch(spread, device, _train_rank, job, tracking.tracking_uri())
    return results[spread.node_rank * spread.nproc_per_node]  # this machine's first rank


def _train_rank(world: World, job: _Training, tracking_uri: str) -> dict[str, Any] | None:
    """One rank of data-parallel training: rank 0's final state on each machine's first."""
    # torch's multiprocessing hands the job's tensors to every rank in one shared memory:
    # trained in place, the ranks would write each other's BatchNorm statistics and optimiser
    # step counts. Each trains its own copy.
    job = copy.deepcopy(job)
    if job.settings.distributed.nnodes > 1:  # node 0's resume state, whatever is on this disk
        job = dataclasses.replace(job, start=world.from_main(job.start))
    on_log = tracking.RunMetrics(job.mlflow_run_id, tracking_uri) if job.mlflow_run_id else None
    state = _train_here(world, job, world.device, on_log=on_log)
    if job.settings.distributed.nnodes > 1:
        state = world.from_main(state)
    return state if world.local_rank == 0 else None


def _train_here(world: World, job: _Training, device: torch.device, on_log
                ) -> dict[str, Any] | None:
    own = job.start if job.start is not None and job.start["phase"] == job.phase else None
    batches = _batches(job.store, job.scale, job.cfg, job.settings, device, own, world)
    perceptual = job.perceptual.to(device) if job.perceptual is not None else None
    writer = _CheckpointWriter(job.path, job.identity, job.mlflow_run_id)
    if job.phase == "pretrain":
        return pretrain(job.generator.to(device), batches, perceptual, job.cfg,
                        start=job.start, on_log=on_log, on_checkpoint=writer, world=world)
    return train_adversarial(job.generator.to(device), job.critic.to(device), batches,
                             perceptual, job.cfg, start=job.start, on_log=on_log,
                             on_checkpoint=writer, world=world)


def _build_device(settings: TrainGanParams, device: torch.device) -> torch.device:
    """Where the node builds the models: the training device, or the CPU when they go to
    other processes (each rank moves them to its own GPU)."""
    return device if settings.distributed.world_size == 1 else torch.device("cpu")


def _owned(settings: TrainGanParams, path: Path) -> contextlib.AbstractContextManager:
    """The checkpoint's lock, held by node 0 (which writes it): on a shared disk the other
    machines' runs of the same job must not be refused as a second live run."""
    return resume.owned(path) if settings.distributed.node_rank == 0 else contextlib.nullcontext()


def _check_settings(train_gan: dict[str, Any]) -> TrainGanParams:
    """The whole block, both phases, checked before either starts (params.TrainGanParams)."""
    return validate_params("train_gan", train_gan)


def _perceptual_loss(settings: TrainGanParams, device: torch.device) -> VGGPerceptualLoss:
    return VGGPerceptualLoss(layer=settings.perceptual.layer,
                             weights=settings.perceptual.weights).to(device)


def _perceptual_identity(settings: TrainGanParams, cfg: PhaseParams) -> dict[str, Any] | None:
    """The perceptual loss a phase trains with, for its run identity (None when unused).

    A weights file enters by its content: another file at the same path is another run, the
    same file moved is not. ("imagenet" is torchvision's file, which it checks by its hash.)
    """
    if cfg.perceptual_weight <= 0:
        return None
    identity = settings.perceptual.model_dump()
    if identity["weights"] not in ("imagenet", "random"):  # a path: the loss has opened it
        with open(identity["weights"], "rb") as file:
            identity["weights"] = "sha256:" + hashlib.file_digest(file, "sha256").hexdigest()
    return identity


def _batches(store, scale, cfg, settings, device, start, world=SINGLE):
    if store.scale != scale:
        raise ValueError(f"the training store at {store.folder} was written for x{store.scale}, "
                         f"but scale is {scale}: re-run data_prep "
                         "(kedro run --pipelines=data_prep)")
    dataset = StorePatchDataset(store, patch_size=cfg.patch_size)
    # Resumed at the sample the checkpoint reached, whatever number of processes wrote it.
    return make_loader(dataset, cfg.batch_size, settings.num_workers, cfg.seed, device,
                       start_batch=start["batches"] if start else 0,
                       start_sample=start.get("samples") if start else None,
                       rank=world.rank, world_size=world.size)


def _resume_from(settings: TrainGanParams, path: Path, phase: str, identity: dict[str, Any],
                 store: TrainingStore) -> dict[str, Any] | None:
    """This run's in-progress checkpoint of ``phase`` when ``train_gan.resume`` is true."""
    if not settings.resume:
        if path.exists():
            logger.info("Starting %s afresh (train_gan.resume=false); %s will be overwritten",
                        phase, path)
        return None
    state = resume.load_own(path, _read_checkpoint, phase, identity)
    if state is not None:
        # The identity names the store's pixels by the digests data_prep recorded; a file
        # changed since (by hand, a bad disk) would be continued on as if it were that data.
        try:
            store.verify_content()
        except StoreError as error:
            raise resume.ResumeError(f"not resuming {path}: {error}") from error
        logger.info("Resuming %s from step %d (%s)", phase, state["step"], path)
        tracking.link_resumed(state.get("mlflow_run_id"))
    return state


def _read_checkpoint(path: Path) -> dict[str, Any]:
    return TorchCheckpointDataset(filepath=str(path)).load()()


def _provenance(identity: dict[str, Any], mlflow_run_id: str | None) -> dict[str, Any]:
    """Which run a state belongs to: saved with every checkpoint of the phase."""
    return {"run_identity": identity, "mlflow_run_id": mlflow_run_id}


class _CheckpointWriter:
    """Saves the in-progress checkpoint (a class, not a closure: it travels to rank 0)."""

    def __init__(self, path: Path, identity: dict[str, Any], mlflow_run_id: str | None):
        self.path, self.provenance = path, _provenance(identity, mlflow_run_id)

    def __call__(self, state: dict[str, Any]) -> None:
        # atomic: a kill keeps the last one
        try:
            TorchCheckpointDataset(filepath=str(self.path)).save({**state, **self.provenance})
        except Exception as error:
            if not _disk_full(error):
                raise
            raise OSError(errno.ENOSPC, f"step {state['step']}: the checkpoint was not written: "
                          f"{_disk_full(error).strerror}. Then continue with "
                          "train_gan.resume=true") from error


def _disk_full(error: BaseException | None) -> OSError | None:
    """The ENOSPC/EDQUOT behind ``error`` (Kedro wraps a dataset's errors), or None."""
    while error is not None:
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return error
        error = error.__cause__
    return None


def _log_metrics(step: int, metrics: dict[str, float]) -> None:
    tracking.log_metrics(metrics, step=step)  # once per window of log_every steps


def _log_run_settings(phase: str, device: torch.device, perceptual: VGGPerceptualLoss | None,
                      cfg: PhaseParams, path: Path, settings: TrainGanParams) -> None:
    source = perceptual.weights_source if perceptual is not None else "unused"
    spread = settings.distributed
    logger.info("%s on %s%s; perceptual weights: %s; in-progress checkpoint %s", phase, device,
                f" x {spread.world_size} processes ({spread.nnodes} machine(s))"
                if spread.world_size > 1 else "", source, path)
    bf16 = use_bf16_autocast(cfg.amp_bf16, device)
    logger.info("%s: bf16 autocast %s (amp_bf16: %s)", phase, "on" if bf16 else "off",
                str(cfg.amp_bf16).lower())
    tags = {f"{phase}.device": device, f"{phase}.perceptual_weights": source,
            f"{phase}.channels_last": cfg.channels_last, f"{phase}.amp_bf16": bf16,
            f"{phase}.in_progress_checkpoint": path}
    if spread.world_size > 1:
        tags |= {f"{phase}.world_size": spread.world_size,
                 f"{phase}.global_batch_size": cfg.batch_size * spread.world_size,
                 f"{phase}.sync_batchnorm": spread.sync_batchnorm}
    tracking.set_tags(tags)


def _finish(phase: str, state: dict[str, Any], identity: dict[str, Any],
            settings: TrainGanParams) -> dict[str, Any]:
    """The returned state with its provenance; why the phase stopped, and that state as an
    artifact of the MLflow run (this run's own state, never a file another run may rewrite).

    (kedro-mlflow's MlflowArtifactDataset cannot wrap a versioned dataset under Kedro 1.x: the
    wrapped dataset gets its own save version and the catalog refuses it.)
    """
    state = {**state, **_provenance(identity, tracking.run_id())}
    if settings.distributed.node_rank > 0:  # node 0's run records it
        return state
    tracking.set_tags({f"{phase}.stopped_because": state["stopped_because"],
                       f"{phase}.final_step": state["step"],
                       f"{phase}.run_identity": identity["digest"]})
    tracking.log_state(state, f"checkpoints/{phase}.pt")
    return state
