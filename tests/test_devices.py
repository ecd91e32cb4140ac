"""Which device to run on, and in which precision (devices.py)."""

from __future__ import annotations

import pytest
import torch

from srgan_pipeline import devices
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


def test_auto_precision_follows_the_hardware(monkeypatch):
    monkeypatch.setattr(devices, "cpu_has_fast_bf16", lambda: False)  # e.g. AVX2 only
    assert devices.resolve_precision("auto", CPU) == "fp32"
    assert devices.resolve_precision("bf16", CPU) == "bf16"  # asked for: honoured
    monkeypatch.setattr(devices, "cpu_has_fast_bf16", lambda: True)  # AMX / AVX512-BF16
    assert devices.resolve_precision("auto", CPU) == "bf16"
    assert devices.resolve_precision("fp32", CPU) == "fp32"
    with pytest.raises(ValueError, match=r"upscale.precision must be one of \['auto', 'fp32'"):
        devices.resolve_precision("half", CPU, "upscale.precision")
