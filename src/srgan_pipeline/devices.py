"""Which device to run on, and in which precision.

bf16 pays where the hardware has bf16 matrix units: Intel AMX or AVX512-BF16 on a CPU (oneDNN
runs the convolutions there), and CUDA GPUs with bf16 support. Elsewhere oneDNN emulates bf16
and a step is slower than float32 (0.47x on an AVX-512 CPU without bf16, most cloud Xeons
before Sapphire Rapids), so ``auto`` means float32 there.

oneDNN's own answer (``torch.ops.mkldnn._is_mkldnn_bf16_supported``) cannot decide it: it says
True on every AVX-512 CPU, emulated or not. So the CPU's instructions decide (Linux: the flags of
/proc/cpuinfo), within the limit a user set with ``ONEDNN_MAX_CPU_ISA``; where the flags cannot
be read (macOS, Windows), a short measurement of one convolution in both precisions does.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

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


# oneDNN's ISA names (ONEDNN_MAX_CPU_ISA), lowest first; from AVX512_CORE_BF16 up, oneDNN may
# use bf16 instructions. The names after it are aliases or successors (oneDNN's cpu_isa_t).
_ONEDNN_ISAS = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE",
                "AVX512_CORE_VNNI", "AVX512_CORE_BF16", "AVX10_1_512", "AVX512_CORE_FP16",
                "AVX10_1_512_AMX", "AVX512_CORE_AMX", "AVX10_1_512_AMX_FP16",
                "AVX512_CORE_AMX_FP16", "AVX10_2_512", "AVX10_2_512_AMX_2")
_FIRST_BF16_ISA = _ONEDNN_ISAS.index("AVX512_CORE_BF16")
_BF16_FLAGS = {"avx512_bf16": "AVX512-BF16", "amx_bf16": "AMX"}  # /proc/cpuinfo's names
_MEASURED_MIN_SPEEDUP = 1.25  # bf16 must beat fp32 clearly: emulation is near 0.5x


@dataclass(frozen=True)
class Bf16Verdict:
    """Whether bf16 is faster than float32 here, and why (logged and tagged by the runs)."""

    fast: bool
    reason: str


def cpu_bf16() -> Bf16Verdict:
    """This CPU's verdict: its bf16 instructions, within ``ONEDNN_MAX_CPU_ISA`` (cached: the
    limit is read by oneDNN once, at its first use, and the flags do not change)."""
    return _cpu_bf16(os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA"))


@functools.cache
def _cpu_bf16(limit: str | None) -> Bf16Verdict:
    try:
        onednn = bool(torch.backends.mkldnn.is_available()
                      and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        onednn = False
    if not onednn:
        return Bf16Verdict(False, "oneDNN reports no bf16 support on this CPU"
                           + (f" under ONEDNN_MAX_CPU_ISA={limit}" if limit else ""))
    if limit and limit.upper() in _ONEDNN_ISAS and _ONEDNN_ISAS.index(limit.upper()) < \
            _FIRST_BF16_ISA:
        return Bf16Verdict(False, f"ONEDNN_MAX_CPU_ISA={limit} keeps oneDNN below "
                           "AVX512_CORE_BF16: bf16 would be emulated")
    flags = _cpu_flags()
    if flags is None:
        return _measured_bf16()
    units = [name for flag, name in _BF16_FLAGS.items() if flag in flags]
    if limit and limit.upper() in _ONEDNN_ISAS and "AMX" not in limit.upper():
        units = [name for name in units if name != "AMX"]  # AMX is beyond the user's limit
    if units:
        return Bf16Verdict(True, f"the CPU has {' and '.join(units)}"
                           + (f" (ONEDNN_MAX_CPU_ISA={limit})" if limit else ""))
    return Bf16Verdict(False, "the CPU has neither AMX nor AVX512-BF16 (/proc/cpuinfo): bf16 "
                       "would be emulated")


def _cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str] | None:
    """The CPU's instruction flags (Linux), None where they cannot be read."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return None


def _measured_bf16(repeats: int = 3) -> Bf16Verdict:
    """Where the flags are unknown: one generator-sized 3x3 convolution, best of ``repeats``
    in each precision (about a tenth of a second)."""
    conv = torch.nn.Conv2d(64, 64, 3, padding=1).eval()
    x = torch.randn(1, 64, 96, 96).to(memory_format=torch.channels_last)
    times = {}
    with torch.inference_mode():
        for dtype in (torch.float32, torch.bfloat16):
            layer, data = conv.to(dtype), x.to(dtype)
            layer(data)  # oneDNN builds its kernel on the first call
            times[dtype] = min(_timed(layer, data) for _ in range(repeats))
    speedup = times[torch.float32] / times[torch.bfloat16]
    return Bf16Verdict(speedup >= _MEASURED_MIN_SPEEDUP,
                       f"measured: a bf16 convolution ran {speedup:.2f}x the speed of float32 "
                       f"(bf16 needs >= {_MEASURED_MIN_SPEEDUP}x)")


def _timed(layer: torch.nn.Module, data: torch.Tensor) -> float:
    started = time.perf_counter()
    layer(data)
    return time.perf_counter() - started


def cpu_has_fast_bf16() -> bool:
    """Whether bf16 is faster than float32 on this CPU (:func:`cpu_bf16`)."""
    return cpu_bf16().fast


def bf16_verdict(device: torch.device) -> Bf16Verdict:
    """Whether ``device`` runs bf16 convolutions on hardware units, and why."""
    if device.type == "cuda":
        fast = torch.cuda.is_bf16_supported()
        return Bf16Verdict(fast, f"{torch.cuda.get_device_name(device)} "
                           + ("supports bf16" if fast else "has no bf16 support"))
    if device.type == "cpu":
        return cpu_bf16()
    return Bf16Verdict(False, "MPS: bf16 support depends on the macOS version; float32 is "
                       "the safe choice")


def bf16_is_fast(device: torch.device) -> bool:
    """Whether ``device`` runs bf16 convolutions on hardware units."""
    return bf16_verdict(device).fast


def use_bf16_autocast(setting: bool | str, device: torch.device) -> bool:
    """A phase's ``amp_bf16`` -> whether it trains under bf16 autocast.

    ``auto``: on where bf16 is fast (:func:`bf16_verdict`: AMX / AVX512-BF16 CPUs, CUDA GPUs with
    bf16), off elsewhere, where emulated bf16 makes a step slower than float32.
    """
    return bf16_is_fast(device) if setting == "auto" else bool(setting)


def bf16_autocast_reason(setting: bool | str, device: torch.device) -> str:
    """Why :func:`use_bf16_autocast` decided as it did (logged and tagged)."""
    return bf16_verdict(device).reason if setting == "auto" else f"amp_bf16={setting}, as set"


def precision_choice(name: str, device: torch.device, param: str = "precision"
                     ) -> tuple[str, str]:
    """``auto`` -> ``bf16`` where it is fast on ``device``, else ``fp32``; explicit names kept.
    Returns (precision, why), the why logged here and tagged by the runs.

    An explicit ``bf16`` where it is slow is honoured with a warning: the user asked for it.
    """
    if name not in PRECISIONS:
        raise ValueError(f"{param} must be one of {list(PRECISIONS)}, got {name!r}")
    if name == "auto":
        verdict = bf16_verdict(device)
        chosen = "bf16" if verdict.fast else "fp32"
        logger.info("%s=auto on %s: %s, because %s", param, device, chosen, verdict.reason)
        return chosen, verdict.reason
    if name == "bf16" and not bf16_is_fast(device):
        logger.warning("%s=bf16 on %s, which has no bf16 units: expect it to be slower than "
                       "fp32 (use auto or fp32)", param, device)
    return name, f"{param}={name}, as set"


def resolve_precision(name: str, device: torch.device, param: str = "precision") -> str:
    """:func:`precision_choice` without the why."""
    return precision_choice(name, device, param)[0]
