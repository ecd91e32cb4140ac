"""Losses for SRGAN with a WGAN-GP critic (Gulrajani et al. 2017).

Sign conventions: the critic's Wasserstein distance estimate is
    W = real_scores.mean() - fake_scores.mean().
The critic maximises W, i.e. minimises `critic_wasserstein_loss` = -W (plus the gradient
penalty); the generator minimises `generator_adversarial_loss` = -fake_scores.mean().
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def gradient_penalty(
    critic: nn.Module,
    real: torch.Tensor,
    fake: torch.Tensor,
    weight: float = 10.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """WGAN-GP penalty: weight * E[(||grad_x critic(x)||_2 - 1)^2] at random interpolates.

    x = alpha * real + (1 - alpha) * fake with one alpha ~ U[0, 1] per sample, drawn as
    `torch.rand((N, 1, 1, 1), generator=generator)` (on the generator's device, then
    moved to real's device), so a seeded `generator` makes it deterministic.

    `real` and `fake` are detached: the penalty constrains the critic only. The gradient
    is taken with create_graph=True so the penalty itself can be back-propagated into
    the critic's parameters. Everything runs in float32 with autocast disabled: the
    penalty differentiates through the critic's gradient, which is too imprecise in
    bf16/fp16. The critic's parameters are expected to be float32 (as under AMP).
    """
    if real.shape != fake.shape:
        raise ValueError(
            f"real and fake must have the same shape; got {tuple(real.shape)} and "
            f"{tuple(fake.shape)}"
        )
    real = real.detach().float()
    fake = fake.detach().float()
    n = real.shape[0]
    alpha_device = generator.device if generator is not None else real.device
    alpha = torch.rand((n, 1, 1, 1), generator=generator, device=alpha_device).to(real.device)
    interpolates = (alpha * real + (1 - alpha) * fake).requires_grad_(True)

    with torch.autocast(device_type=real.device.type, enabled=False):
        scores = critic(interpolates)
        (grads,) = torch.autograd.grad(scores.sum(), interpolates, create_graph=True)
        grad_norm = grads.flatten(1).norm(2, dim=1)
        return weight * ((grad_norm - 1) ** 2).mean()


def critic_wasserstein_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """What the critic minimises: fake.mean() - real.mean(), the negated Wasserstein
    estimate W = real.mean() - fake.mean() (add `gradient_penalty` to it)."""
    return fake_scores.mean() - real_scores.mean()


def generator_adversarial_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """What the generator minimises: -fake.mean() (raise the critic's score of SR images)."""
    return -fake_scores.mean()


def pixel_loss(sr: torch.Tensor, hr: torch.Tensor, kind: str = "mse") -> torch.Tensor:
    """Pixel-wise loss between SR and HR images of the same range: "mse" or "l1"."""
    if kind == "mse":
        return F.mse_loss(sr, hr)
    if kind == "l1":
        return F.l1_loss(sr, hr)
    raise ValueError(f"pixel loss kind must be 'mse' or 'l1'; got {kind!r}")
