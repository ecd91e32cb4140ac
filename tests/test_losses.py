import pytest
import torch
from torch import nn

from srgan_pipeline.losses import (
    critic_wasserstein_loss,
    generator_adversarial_loss,
    gradient_penalty,
    pixel_loss,
)

SHAPE = (4, 3, 5, 5)


class LinearCritic(nn.Module):
    """f(x) = <w, x> per sample: its input gradient is w everywhere."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.w = nn.Parameter(w.clone())
        self.input_dtypes: list[torch.dtype] = []
        self.autocast_on: list[bool] = []

    def forward(self, x):
        self.input_dtypes.append(x.dtype)
        self.autocast_on.append(torch.is_autocast_enabled(x.device.type))
        return (x * self.w).flatten(1).sum(1)


class HalfSquaredNormCritic(nn.Module):
    """f(x) = 0.5 * ||x||^2 per sample: its input gradient is x itself."""

    def forward(self, x):
        return 0.5 * x.flatten(1).pow(2).sum(1)


def w_with_norm(norm: float) -> torch.Tensor:
    w = torch.randn(SHAPE[1:], generator=torch.Generator().manual_seed(0))
    return w / w.norm() * norm


@pytest.mark.parametrize("norm, expected", [(1.0, 0.0), (3.0, 40.0)])
def test_linear_critic_penalty_is_weight_times_norm_minus_one_squared(norm, expected):
    critic = LinearCritic(w_with_norm(norm))
    gp = gradient_penalty(critic, torch.randn(SHAPE), torch.randn(SHAPE))
    assert gp.item() == pytest.approx(expected, abs=1e-4)
    gp5 = gradient_penalty(critic, torch.randn(SHAPE), torch.randn(SHAPE), weight=5.0)
    assert gp5.item() == pytest.approx(expected / 2, abs=1e-4)


def test_penalty_at_interpolates_with_seeded_alpha():
    real, fake = torch.randn(SHAPE), torch.randn(SHAPE)
    gp = gradient_penalty(
        HalfSquaredNormCritic(), real, fake, weight=10.0, generator=torch.Generator().manual_seed(7)
    )
    alpha = torch.rand((SHAPE[0], 1, 1, 1), generator=torch.Generator().manual_seed(7))
    interpolates = alpha * real + (1 - alpha) * fake  # = the critic's input gradient
    expected = 10.0 * ((interpolates.flatten(1).norm(dim=1) - 1) ** 2).mean()
    torch.testing.assert_close(gp, expected)
    # Different alphas give a different answer, so the check above is not vacuous.
    other = gradient_penalty(
        HalfSquaredNormCritic(), real, fake, generator=torch.Generator().manual_seed(8)
    )
    assert not torch.allclose(gp, other)


def test_penalty_backpropagates_into_critic_parameters():
    w0 = w_with_norm(3.0)
    critic = LinearCritic(w0)
    real = torch.randn(SHAPE, requires_grad=True)
    fake = torch.randn(SHAPE, requires_grad=True)
    gradient_penalty(critic, real, fake, weight=10.0).backward()
    # d/dw [weight * (||w|| - 1)^2] = 2 * weight * (||w|| - 1) * w / ||w||
    expected = 2 * 10.0 * (3.0 - 1.0) * w0 / 3.0
    torch.testing.assert_close(critic.w.grad, expected)
    assert real.grad is None and fake.grad is None  # inputs are detached


def test_penalty_runs_in_fp32_for_bf16_inputs_and_under_autocast():
    critic = LinearCritic(w_with_norm(3.0))
    real = torch.randn(SHAPE).bfloat16()
    fake = torch.randn(SHAPE).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        gp = gradient_penalty(critic, real, fake)
    assert gp.dtype == torch.float32
    assert critic.input_dtypes == [torch.float32]
    assert critic.autocast_on == [False]
    assert gp.item() == pytest.approx(40.0, abs=1e-3)


def test_penalty_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        gradient_penalty(HalfSquaredNormCritic(), torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 5))


def test_wasserstein_signs():
    real = torch.tensor([3.0, 5.0])  # mean 4
    fake = torch.tensor([-1.0, 1.0, 0.0])  # mean 0
    # Wasserstein estimate = real.mean() - fake.mean() = 4; the critic minimises its negative.
    assert critic_wasserstein_loss(real, fake).item() == -4.0
    assert generator_adversarial_loss(fake).item() == 0.0
    assert generator_adversarial_loss(torch.tensor([2.0, 4.0])).item() == -3.0


def test_pixel_loss_kinds():
    sr, hr = torch.zeros(1, 3, 2, 2), torch.full((1, 3, 2, 2), 0.5)
    assert pixel_loss(sr, hr).item() == pytest.approx(0.25)
    assert pixel_loss(sr, hr, kind="l1").item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="'mse' or 'l1'"):
        pixel_loss(sr, hr, kind="l2")
