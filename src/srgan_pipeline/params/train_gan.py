"""The ``train_gan`` parameter block (conf/base/parameters_train_gan.yml): the models, both
training phases and data-parallel training."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from srgan_pipeline.architecture import CRITIC_DOWNSAMPLES, CRITIC_MIN_INPUT, CRITIC_POOL_SIZE
from srgan_pipeline.names import COMPILE_MODES, DEGRADATIONS, LR_SCHEDULES, PIXEL_LOSSES
from srgan_pipeline.params.rules import (
    AmpBf16,
    Betas,
    Device,
    Milestones,
    NonNegativeFloat,
    NonNegativeInt,
    Params,
    PositiveFloat,
    PositiveInt,
    patch_of_scale,
    vgg_layer,
)


class GeneratorParams(Params):
    channels: PositiveInt
    num_blocks: PositiveInt
    residual_init_scale: PositiveFloat | None
    input_skip: bool


class CriticParams(Params):
    base_channels: PositiveInt


class PerceptualParams(Params):
    layer: Annotated[str, AfterValidator(vgg_layer)]
    weights: str  # imagenet, random, or a path (checked when the loss is built)


class PhaseParams(Params):
    """Fields both training phases have: the loops read their settings from these models."""

    iterations: PositiveInt
    batch_size: PositiveInt
    patch_size: Annotated[PositiveInt, AfterValidator(patch_of_scale)]  # HR crop side
    lr: PositiveFloat
    betas: Betas
    pixel_loss: Literal[PIXEL_LOSSES]
    perceptual_weight: NonNegativeFloat
    log_every: PositiveInt
    checkpoint_every: PositiveInt
    seed: NonNegativeInt
    channels_last: bool
    amp_bf16: AmpBf16
    max_minutes: PositiveFloat | None
    # The time budget never stops a run before this step; above iterations it changes nothing
    # (a quick try of the quickstart with iterations=50 runs 50 steps).
    min_iterations: PositiveInt | None
    lr_schedule: Literal[LR_SCHEDULES]
    warmup_steps: NonNegativeInt
    # step: the learning rate is multiplied by lr_gamma at each of these generator steps
    # (absolute steps, so a resumed or extended run keeps them where they were).
    lr_milestones: Milestones
    lr_gamma: Annotated[float, Field(gt=0, le=1)]
    # torch.compile mode of the trained generator and the VGG loss; null: eager; auto:
    # reduce-overhead on one CUDA process, else eager (training/loop.py, compile_mode).
    compile: Literal[("auto", *COMPILE_MODES)] | None

    @model_validator(mode="after")
    def _schedule_fits(self) -> PhaseParams:
        if self.min_iterations is not None:
            if self.max_minutes is None:
                raise ValueError(f"min_iterations ({self.min_iterations}) is a floor under the "
                                 "time budget, but max_minutes is null: set max_minutes, or "
                                 "min_iterations to null")
        steps = self.lr_milestones
        if list(steps) != sorted(set(steps)):
            raise ValueError(f"lr_milestones must be increasing steps, got {list(steps)}")
        if self.lr_schedule == "step" and not steps:
            raise ValueError("lr_schedule is 'step' but lr_milestones is empty: list the steps "
                             "at which the learning rate is multiplied by lr_gamma")
        if self.lr_schedule != "step" and steps:
            raise ValueError(f"lr_milestones {list(steps)} apply to lr_schedule 'step' only; "
                             f"lr_schedule is {self.lr_schedule!r}: set lr_milestones to []")
        return self


class PretrainParams(PhaseParams):
    """Phase 1: the critic fields are refused as unknown keys."""

    ema_decay: Annotated[float, Field(gt=0, lt=1)] | None


class AdversarialParams(PhaseParams):
    """Phase 2: the weight-averaging field is refused as an unknown key."""

    critic_lr: PositiveFloat
    critic_betas: Betas
    n_critic: PositiveInt
    gp_weight: NonNegativeFloat
    adversarial_weight: NonNegativeFloat


class DistributedParams(Params):
    """Data-parallel training (training/distributed.py): processes per machine and machines."""

    nproc_per_node: PositiveInt  # 1: today's single-process training, nothing started
    nnodes: PositiveInt
    node_rank: NonNegativeInt
    master_addr: str
    master_port: Annotated[int, Field(ge=1, le=65535)] | None  # null: a free port, one machine
    sync_batchnorm: bool  # torch's SyncBatchNorm; CUDA only (refused when training on CPU)

    @model_validator(mode="after")
    def _nodes_fit(self) -> DistributedParams:
        if self.node_rank >= self.nnodes:
            raise ValueError(f"node_rank ({self.node_rank}) must be < nnodes ({self.nnodes}): "
                             "machines are numbered 0 .. nnodes-1")
        if self.nnodes > 1 and self.master_port is None:
            raise ValueError(f"nnodes is {self.nnodes} but master_port is null: every machine "
                             "must name the same master_addr and master_port (node 0's)")
        return self

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes


class TrainGanParams(Params):
    device: Device
    num_workers: NonNegativeInt
    resume: bool
    checkpoint_dir: str
    # How the LR crops are made from the HR crops, both phases: the paper's bicubic (the store's
    # LR) or the real-world model of the degradations block (degradations.py)
    degradation: Literal[DEGRADATIONS]
    generator: GeneratorParams
    critic: CriticParams
    perceptual: PerceptualParams
    pretrain: PretrainParams
    adversarial: AdversarialParams
    distributed: DistributedParams

    @model_validator(mode="after")
    def _critic_sees_the_crop(self) -> TrainGanParams:
        patch = self.adversarial.patch_size
        if patch < CRITIC_MIN_INPUT:
            raise ValueError(
                f"{{param}}.adversarial.patch_size is {patch}, smaller than the {CRITIC_MIN_INPUT}"
                f" px the critic takes (its {CRITIC_DOWNSAMPLES} stride-2 convolutions must leave"
                f" a {CRITIC_POOL_SIZE}x{CRITIC_POOL_SIZE} map for its pooling): set it to "
                f"{CRITIC_MIN_INPUT} or more (conf/base: 96)")
        return self

    @model_validator(mode="after")
    def _device_fits_the_processes(self) -> TrainGanParams:
        problem = distributed_device_problem(self.distributed, self.device)
        if problem:
            raise ValueError(problem)
        return self


def distributed_device_problem(spread: DistributedParams, device: str) -> str | None:
    """Why data-parallel training cannot run on ``device``, or None: ``device`` is a
    ``train_gan.device`` value, checked with the parameters, or the device ``auto`` resolved to,
    checked on the machine that trains (training.distributed.check)."""
    if spread.world_size == 1 or device == "auto":
        return None
    kind, _, index = device.partition(":")
    if kind not in ("cpu", "cuda"):
        return (f"train_gan.distributed.nproc_per_node={spread.nproc_per_node} runs on CPU "
                f"(gloo) or CUDA (nccl), not on {device}; set train_gan.device=cpu, or "
                "nproc_per_node=1")
    if kind == "cuda" and index:
        return (f"train_gan.device={device} names one GPU, but nproc_per_node="
                f"{spread.nproc_per_node} puts process i on GPU i: set train_gan.device=cuda "
                "(or auto), and CUDA_VISIBLE_DEVICES to choose the GPUs")
    if spread.sync_batchnorm and kind != "cuda":
        return ("train_gan.distributed.sync_batchnorm=true needs CUDA (torch's SyncBatchNorm "
                f"runs on GPUs only), but training runs on {device}: set it to false (each "
                "process then normalises over its own batch)")
    return None
