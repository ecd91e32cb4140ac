"""Batches into the training step (training/feed.py)."""

from __future__ import annotations

import pytest
from test_loop import GEN, cfg
from test_patches import loader

from srgan_pipeline.checkpoints import build_generator
from srgan_pipeline.training import pretrain

pytestmark = pytest.mark.usefixtures("one_thread")


def test_finite_batch_source_gets_a_clear_error():
    with pytest.raises(RuntimeError, match="batch iterator ran out"):
        pretrain(build_generator(GEN), iter([next(loader())]), None, cfg(perceptual_weight=0.0))
