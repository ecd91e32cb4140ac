"""Sizes the network architectures fix, which settings are checked against; imports nothing.

``models/`` builds the networks from these numbers and ``srgan_pipeline.params`` refuses
settings that do not fit them, both reading them here, so the limit a setting is held to is the
network's own (tests/test_architecture.py builds the networks to check it).
"""

from __future__ import annotations

# The generator's upsampling factors: one or two x2 PixelShuffle stages (models/generator.py).
SCALES = (2, 4)

# The critic (models/critic.py) halves each side with each of its stride-2 convolutions
# (rounding up), then averages the map to a CRITIC_POOL_SIZE grid for its dense layers.
CRITIC_DOWNSAMPLES = 4
CRITIC_POOL_SIZE = 6


def critic_min_input(pool_size: int = CRITIC_POOL_SIZE) -> int:
    """The smallest side the critic takes: its last map still has ``pool_size`` cells, so the
    pool only averages and never replicates cells (81 px for the default grid of 6)."""
    return 2**CRITIC_DOWNSAMPLES * (pool_size - 1) + 1


# What train_gan's critic (default grid) needs of train_gan.adversarial.patch_size.
CRITIC_MIN_INPUT = critic_min_input()
