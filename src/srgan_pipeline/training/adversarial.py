"""Phase 2 (WGAN-GP): per generator step, ``n_critic`` critic steps on fresh batches, then one
generator step on a fresh batch with pixel + perceptual_weight x VGG + adversarial_weight x
(-critic(fake).mean())."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from srgan_pipeline.checkpoints import evaluated_weights, load_critic_state, load_generator_state
from srgan_pipeline.losses import (
    critic_wasserstein_loss,
    generator_adversarial_loss,
    gradient_penalty,
)
from srgan_pipeline.models import Generator, assert_no_batchnorm, hr_to_unit, unit_to_hr
from srgan_pipeline.params import AdversarialParams
from srgan_pipeline.training.distributed import SINGLE, World
from srgan_pipeline.training.feed import Batch, BatchFeed
from srgan_pipeline.training.loop import OnCheckpoint, Phase, adam, run
from srgan_pipeline.training.meter import OnLog


def train_adversarial(
    generator: Generator,
    critic: nn.Module,
    batches: Iterator[Batch],
    perceptual: nn.Module | None,
    cfg: AdversarialParams,
    *,
    start: Mapping[str, Any] | None = None,
    on_log: OnLog | None = None,
    on_checkpoint: OnCheckpoint | None = None,
    world: World = SINGLE,
) -> dict[str, Any] | None:
    """Train ``generator`` and ``critic`` in place; ``batches`` yields (LR, HR) in [0, 1].

    ``start``: a "pretrain" state (its generator weights are loaded, training starts at step
    0) or an "adversarial" state to resume. Returns the final state (as checkpointed).
    ``world``: this process's rank in data-parallel training (loop.run).
    """
    return run(AdversarialTraining(cfg, generator, critic, perceptual), batches, start=start,
               on_log=on_log, on_checkpoint=on_checkpoint, world=world)


class AdversarialTraining(Phase):
    name = "adversarial"
    schema = AdversarialParams

    def __init__(self, cfg: AdversarialParams, generator: Generator, critic: nn.Module,
                 perceptual: nn.Module | None):
        assert_no_batchnorm(critic)  # per-sample gradient penalty: see models/critic.py
        super().__init__(cfg, generator, perceptual, critic)
        critic.train()
        self.critic = self.train_critic = critic
        self.models["critic"] = critic
        self.optimizer_g = adam(generator.parameters(), cfg.lr, cfg.betas, self.device)
        self.optimizer_c = adam(critic.parameters(), cfg.critic_lr, cfg.critic_betas,
                                self.device)
        # The learning-rate schedule applies to both (the paper's drop at 10^5 updates).
        self.optimizers = {"optimizer_g": (self.optimizer_g, cfg.lr, cfg.betas),
                           "optimizer_c": (self.optimizer_c, cfg.critic_lr, cfg.critic_betas)}

    def start_from(self, start: Mapping[str, Any] | None, resuming: bool) -> None:
        if start is not None and start["phase"] not in ("pretrain", "adversarial"):
            raise ValueError(f"train_adversarial cannot start from a {start['phase']!r} state")
        if resuming:
            load_generator_state(self.generator, start)
            load_critic_state(self.critic, start)
        elif start is not None:  # a pretrained generator to start the GAN phase from
            load_generator_state(self.generator, evaluated_weights(start))

    def distribute(self, world: World) -> None:
        super().distribute(world)
        self.train_critic = world.wrap(self.critic)

    def train_step(self, feed: BatchFeed, step: int) -> list[dict[str, float]]:
        values = []
        for _ in range(self.cfg.n_critic):
            values += self.critic_step(*feed.next(), step)
        return values + self.generator_step(*feed.next(), step)

    def critic_step(self, low_res: torch.Tensor, high_res: torch.Tensor, step: int
                    ) -> list[dict[str, float]]:
        """Maximise W = E[critic(real)] - E[critic(fake)] under the gradient penalty."""
        self.step_begins()
        real = unit_to_hr(high_res)
        # The generator stays in train mode (BatchNorm on batch statistics, as in its own
        # step), so these forwards also update its running statistics. Not through DDP: no
        # gradients to synchronise.
        with torch.no_grad(), self.autocast():
            fake = self.generator(low_res)
        with self.autocast():
            # One forward over real and fake together: the critic scores each sample on its
            # own (no BatchNorm), so this equals two forwards, at one launch's cost.
            real_scores, fake_scores = self.train_critic(torch.cat([real, fake])).float().chunk(2)
            w_loss = critic_wasserstein_loss(real_scores, fake_scores)
        # autograd.grad(create_graph=True) w.r.t. the interpolates, then the one backward below:
        # DDP all-reduces the critic's gradients of both terms together.
        gp = gradient_penalty(self.train_critic, real, fake, self.cfg.gp_weight)  # fp32 inside
        c_loss = w_loss + gp
        values = self.losses.take({"critic/wasserstein_distance": -w_loss,
                                   "critic/gradient_penalty": gp, "critic/loss": c_loss}, step)
        self.optimizer_c.zero_grad(set_to_none=True)
        c_loss.backward()
        self.optimizer_c.step()
        return values

    def generator_step(self, low_res: torch.Tensor, high_res: torch.Tensor, step: int
                       ) -> list[dict[str, float]]:
        """Content losses plus fooling the critic."""
        self.step_begins()
        # Gradients flow through the critic, not into it: the critic itself, not its DDP
        # wrapper, which would wait for critic gradients that never come.
        self.critic.requires_grad_(False)
        try:
            with self.autocast():
                sr = self.train_generator(low_res)
                losses, total = self.content_loss("gan", hr_to_unit(sr), high_res)
                losses["gan/adversarial"] = generator_adversarial_loss(self.critic(sr).float())
                total = total + self.cfg.adversarial_weight * losses["gan/adversarial"]
        finally:
            self.critic.requires_grad_(True)
        losses["gan/generator_total"] = total
        values = self.losses.take(losses, step)
        self.optimizer_g.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer_g.step()
        return values

    def extra_state(self) -> dict[str, Any]:
        return {"critic_config": dict(getattr(self.critic, "config", {}))}
