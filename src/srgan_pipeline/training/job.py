"""A training phase as a job: run in this process, or in the data-parallel ranks it starts.

The train_gan node builds the models and the resume point, and hands a :class:`Job` to
:func:`train`; here each process builds its batches on its device and runs the phase's loop
(pretrain.py, adversarial.py). No Kedro and no MLflow: metrics go to the ``on_log`` callbacks
the node passes, checkpoints to ``job.save``.

With ``train_gan.distributed.nproc_per_node`` > 1, :func:`train` starts the processes
(``distributed.launch``) and waits for them: each rank builds its shard of the batches and
trains; rank 0 logs (``on_rank_log``: to the node's MLflow run by its id), writes the
checkpoints and hands the final state back, which :func:`train` returns as in one process.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from typing import Any

import torch
from torch import nn

from srgan_pipeline.devices import bf16_autocast_reason, pick_device, use_bf16_autocast
from srgan_pipeline.models import VGGPerceptualLoss
from srgan_pipeline.params import PhaseParams, TrainGanParams
from srgan_pipeline.patches import PatchDataset, make_loader
from srgan_pipeline.training import distributed
from srgan_pipeline.training.adversarial import train_adversarial
from srgan_pipeline.training.distributed import SINGLE, World
from srgan_pipeline.training.loop import OnCheckpoint
from srgan_pipeline.training.meter import OnLog
from srgan_pipeline.training.pretrain import pretrain
from srgan_pipeline.training_store import TrainingStore

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Job:
    """What a training process needs (picklable: sent to each rank as it starts)."""

    phase: str
    settings: TrainGanParams
    store: TrainingStore
    scale: int
    generator: nn.Module
    critic: nn.Module | None
    perceptual: VGGPerceptualLoss | None
    start: dict[str, Any] | None  # resume state, or (phase 2) the pretrained generator
    save: OnCheckpoint  # writes the in-progress checkpoint (resume.CheckpointWriter)

    @property
    def cfg(self) -> PhaseParams:
        return getattr(self.settings, self.phase)


def training_device(settings: TrainGanParams) -> torch.device:
    """``train_gan.device`` resolved, refused early when data-parallel training cannot use it."""
    device = pick_device(settings.device)
    distributed.check(settings.distributed, device)
    return device


def perceptual_loss(settings: TrainGanParams, device: torch.device) -> VGGPerceptualLoss:
    """The VGG loss, built where the models are built (:func:`build_device`)."""
    return VGGPerceptualLoss(layer=settings.perceptual.layer,
                             weights=settings.perceptual.weights).to(build_device(settings, device))


def build_device(settings: TrainGanParams, device: torch.device) -> torch.device:
    """Where the node builds the models: the training device, or the CPU when they go to
    other processes (each rank moves them to its own GPU)."""
    return device if settings.distributed.world_size == 1 else torch.device("cpu")


def announce(job: Job, device: torch.device, checkpoint: Any) -> dict[str, Any]:
    """Log how the phase runs; the same facts as tags for the tracking run."""
    phase, cfg, spread = job.phase, job.cfg, job.settings.distributed
    source = job.perceptual.weights_source if job.perceptual is not None else "unused"
    logger.info("%s on %s%s; perceptual weights: %s; in-progress checkpoint %s", phase, device,
                f" x {spread.world_size} processes ({spread.nnodes} machine(s))"
                if spread.world_size > 1 else "", source, checkpoint)
    bf16, why = use_bf16_autocast(cfg.amp_bf16, device), bf16_autocast_reason(cfg.amp_bf16, device)
    logger.info("%s: bf16 autocast %s (amp_bf16: %s): %s", phase, "on" if bf16 else "off",
                str(cfg.amp_bf16).lower(), why)
    tags = {f"{phase}.device": device, f"{phase}.perceptual_weights": source,
            f"{phase}.channels_last": cfg.channels_last, f"{phase}.amp_bf16": bf16,
            f"{phase}.amp_bf16_reason": why,
            f"{phase}.in_progress_checkpoint": checkpoint}
    if spread.world_size > 1:
        tags |= {f"{phase}.world_size": spread.world_size,
                 f"{phase}.global_batch_size": cfg.batch_size * spread.world_size,
                 f"{phase}.sync_batchnorm": spread.sync_batchnorm}
    return tags


def train(job: Job, device: torch.device, on_log: OnLog | None, on_rank_log: OnLog | None
          ) -> dict[str, Any]:
    """Train in this process (nproc_per_node 1, logging to ``on_log``), or start the ranks
    and wait for them (rank 0 logging to ``on_rank_log``, picklable): the final state."""
    spread = job.settings.distributed
    if spread.world_size == 1:
        return _train_here(SINGLE, job, device, on_log)
    results = distributed.launch(spread, device, _train_rank, job, on_rank_log)
    return results[spread.node_rank * spread.nproc_per_node]  # this machine's first rank


def _train_rank(world: World, job: Job, on_log: OnLog | None) -> dict[str, Any] | None:
    """One rank of data-parallel training: rank 0's final state on each machine's first."""
    # torch's multiprocessing hands the job's tensors to every rank in one shared memory:
    # trained in place, the ranks would write each other's BatchNorm statistics and optimiser
    # step counts. Each trains its own copy.
    job = copy.deepcopy(job)
    if job.settings.distributed.nnodes > 1:  # node 0's resume state, whatever is on this disk
        job = dataclasses.replace(job, start=world.from_main(job.start))
    state = _train_here(world, job, world.device, on_log)
    if job.settings.distributed.nnodes > 1:
        state = world.from_main(state)
    return state if world.local_rank == 0 else None


def _train_here(world: World, job: Job, device: torch.device, on_log: OnLog | None
                ) -> dict[str, Any] | None:
    own = job.start if job.start is not None and job.start["phase"] == job.phase else None
    batches = _batches(job, device, own, world)
    perceptual = job.perceptual.to(device) if job.perceptual is not None else None
    if job.phase == "pretrain":
        return pretrain(job.generator.to(device), batches, perceptual, job.cfg,
                        start=job.start, on_log=on_log, on_checkpoint=job.save, world=world)
    return train_adversarial(job.generator.to(device), job.critic.to(device), batches,
                             perceptual, job.cfg, start=job.start, on_log=on_log,
                             on_checkpoint=job.save, world=world)


def _batches(job: Job, device: torch.device, start: dict[str, Any] | None, world: World):
    store, cfg = job.store, job.cfg
    if store.scale != job.scale:
        raise ValueError(f"the training store at {store.folder} was written for x{store.scale}, "
                         f"but scale is {job.scale}: re-run data_prep "
                         "(kedro run --pipelines=data_prep)")
    dataset = PatchDataset(store, patch_size=cfg.patch_size)
    # Resumed at the sample the checkpoint reached, whatever number of processes wrote it.
    return make_loader(dataset, cfg.batch_size, job.settings.num_workers, cfg.seed, device,
                       start_batch=start["batches"] if start else 0,
                       start_sample=start.get("samples") if start else None,
                       rank=world.rank, world_size=world.size)
