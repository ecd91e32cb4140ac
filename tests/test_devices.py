"""The training and inference device (devices.py)."""

from __future__ import annotations

import pytest
import torch

from srgan_pipeline.devices import pick_device

CPU = torch.device("cpu")


@pytest.mark.parametrize(("cuda", "mps", "expected"), [
    (True, True, "cuda"), (True, False, "cuda"), (False, True, "mps"), (False, False, "cpu"),
])
def test_auto_device_prefers_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert pick_device("auto").type == expected

def test_pick_device():
    assert pick_device("cpu") == CPU
    with pytest.raises(ValueError, match="unknown device 'gpu0'"):
        pick_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="'cuda' requested but CUDA is not available"):
            pick_device("cuda")
