"""The sizes settings are checked against are the networks' own: each is measured on the network."""

from __future__ import annotations

import pytest
import torch

from srgan_pipeline.architecture import (
    CRITIC_MIN_INPUT,
    CRITIC_POOL_SIZE,
    SCALES,
    critic_min_input,
)
from srgan_pipeline.models import Critic, Generator


@pytest.mark.parametrize("pool_size", [CRITIC_POOL_SIZE, 3])
def test_the_critic_minimum_is_the_smallest_side_its_pool_only_averages(pool_size):
    critic = Critic(base_channels=4, pool_size=pool_size, hidden=8)
    side = critic_min_input(pool_size)
    assert critic.min_input_size == side
    cells = [critic.features(torch.zeros(1, 3, s, s)).shape[-1] for s in (side - 1, side)]
    assert cells == [pool_size - 1, pool_size]  # one pixel less and the pool would replicate
    assert critic(torch.zeros(1, 3, side, side)).shape == (1,)
    with pytest.raises(ValueError, match=f"H, W >= {side}"):
        critic(torch.zeros(1, 3, side - 1, side - 1))


def test_train_gans_critic_needs_81_px():
    # train_gan builds the critic with its default grid (train_gan.critic sets the width only)
    assert Critic(base_channels=4).min_input_size == CRITIC_MIN_INPUT == 81


def test_the_generator_upsamples_by_each_scale_and_no_other():
    for scale in SCALES:
        out = Generator(scale=scale, channels=4, num_blocks=1)(torch.zeros(1, 3, 5, 5))
        assert out.shape[-2:] == (5 * scale, 5 * scale)
    for scale in (1, 3, 8):
        with pytest.raises(ValueError, match="Generator supports scale 2 or 4"):
            Generator(scale=scale)
