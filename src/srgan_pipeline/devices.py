"""Which device to run on, and in which precision.

bf16 pays where the hardware has bf16 matrix units: Intel AMX or AVX512-BF16 on a CPU (oneDNN
runs the convolutions there), and CUDA GPUs with bf16 support. Elsewhere (most laptops, AMD
CPUs before Zen 4) oneDNN emulates bf16 and a step can be many times slower than float32, so
``auto`` means float32 there.
"""

from __future__ import annotations

import logging

import torch

from srgan_pipeline.names import DEVICE_TYPES, PRECISIONS

logger = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def pick_device(name: str = "auto") -> torch.device:
    """Resolve a device name: "auto" = cuda, else mps, else cpu; explicit names are checked."""
    mps_ok = torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if mps_ok else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as err:
        raise ValueError(
            f"unknown device {name!r}; use 'auto', 'cpu', 'cuda', 'cuda:<index>' or 'mps'"
        ) from err
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {name!r} requested but CUDA is not available (torch {torch.__version__}, "
                f"CUDA build {torch.version.cuda}); use 'auto' or 'cpu'"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {name!r} requested but this machine has "
                f"{torch.cuda.device_count()} CUDA device(s)"
            )
    elif device.type == "mps" and not mps_ok:
        raise ValueError(f"device {name!r} requested but MPS is not available; use 'auto' or 'cpu'")
    elif device.type not in DEVICE_TYPES:
        raise ValueError(f"unsupported device {name!r}; use 'auto', 'cpu', 'cuda' or 'mps'")
    return device


def cpu_has_fast_bf16() -> bool:
    """Whether oneDNN reports bf16 hardware support (AMX or AVX512-BF16; False where unknown)."""
    try:
        return bool(torch.backends.mkldnn.is_available()
                    and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def bf16_is_fast(device: torch.device) -> bool:
    """Whether ``device`` runs bf16 convolutions on hardware units."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return cpu_has_fast_bf16()
    return False  # MPS: bf16 support depends on the macOS version; float32 is the safe choice


def use_bf16_autocast(setting: bool | str, device: torch.device) -> bool:
    """A phase's ``amp_bf16`` -> whether it trains under bf16 autocast.

    ``auto``: on where bf16 is fast (:func:`bf16_is_fast`: AMX / AVX512-BF16 CPUs, CUDA GPUs with
    bf16), off elsewhere, where emulated bf16 makes a step many times slower than float32.
    """
    return bf16_is_fast(device) if setting == "auto" else bool(setting)


def resolve_precision(name: str, device: torch.device, param: str = "precision") -> str:
    """``auto`` -> ``bf16`` where it is fast on ``device``, else ``fp32``; explicit names kept.

    An explicit ``bf16`` where it is slow is honoured with a warning: the user asked for it.
    """
    if name not in PRECISIONS:
        raise ValueError(f"{param} must be one of {list(PRECISIONS)}, got {name!r}")
    if name == "auto":
        return "bf16" if bf16_is_fast(device) else "fp32"
    if name == "bf16" and not bf16_is_fast(device):
        logger.warning("%s=bf16 on %s, which has no bf16 units: expect it to be slower than "
                       "fp32 (use auto or fp32)", param, device)
    return name
