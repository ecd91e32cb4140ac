"""What a generator checkpoint holds and how a model is loaded from one (checkpoints.py)."""

from __future__ import annotations

import pytest

from srgan_pipeline.checkpoints import build_generator, load_generator_state

GEN = {"scale": 4, "channels": 8, "num_blocks": 1}  # the tiny generator of the training tests


def test_a_plain_state_dict_is_not_taken_for_a_checkpoint():
    plain = build_generator(GEN).state_dict()
    with pytest.raises(ValueError, match=r"is a plain state dict \(keys head.0.weight.*not a "
                                         r"generator checkpoint written by train_gan"):
        load_generator_state(build_generator(GEN), plain)
