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
    monkeypatch.setattr(devices, "cpu_bf16", lambda: devices.Bf16Verdict(False, "AVX2 only"))
    assert devices.precision_choice("auto", CPU, "upscale.precision") == ("fp32", "AVX2 only")
    assert devices.resolve_precision("bf16", CPU) == "bf16"  # asked for: honoured
    monkeypatch.setattr(devices, "cpu_bf16", lambda: devices.Bf16Verdict(True, "AMX"))
    assert devices.precision_choice("auto", CPU) == ("bf16", "AMX")
    assert devices.precision_choice("fp32", CPU, "evaluation.precision") == (
        "fp32", "evaluation.precision=fp32, as set")
    assert devices.use_bf16_autocast("auto", CPU)
    assert devices.bf16_autocast_reason(False, CPU) == "amp_bf16=False, as set"
    with pytest.raises(ValueError, match=r"upscale.precision must be one of \['auto', 'fp32'"):
        devices.resolve_precision("half", CPU, "upscale.precision")


# The CPU's verdict (devices._cpu_bf16, uncached here: the flags are the test's). oneDNN's own
# query is this process's, read at its start; it says True on any AVX-512 CPU.
verdict = devices._cpu_bf16.__wrapped__
onednn_bf16 = pytest.mark.skipif(not torch.ops.mkldnn._is_mkldnn_bf16_supported(),
                                 reason="oneDNN reports no bf16 on this CPU (AVX2 or older)")


@onednn_bf16
@pytest.mark.parametrize(("flags", "limit", "fast", "named"), [
    ({"avx512f", "avx512_bf16"}, None, True, "the CPU has AVX512-BF16"),  # Zen 4
    ({"avx512f", "avx512_bf16", "amx_bf16"}, None, True, "the CPU has AVX512-BF16 and AMX"),
    ({"avx512f", "avx512_bf16", "amx_bf16"}, "avx512_core_bf16", True,
     "the CPU has AVX512-BF16 (ONEDNN_MAX_CPU_ISA=avx512_core_bf16)"),  # AMX beyond the limit
    ({"avx512f", "amx_bf16"}, "AVX512_CORE_BF16", False, "neither AMX nor AVX512-BF16"),
    ({"avx512f", "avx512_vnni"}, None, False, "neither AMX nor AVX512-BF16"),  # Cascade Lake
    ({"avx512f", "avx512_bf16"}, "AVX512_CORE", False, "ONEDNN_MAX_CPU_ISA=AVX512_CORE keeps"),
    ({"avx512f", "avx512_bf16"}, "AVX512_CORE_VNNI", False, "keeps oneDNN below"),
    ({"avx512f", "avx512_bf16", "amx_bf16"}, "AVX512_CORE_AMX", True, "AVX512-BF16 and AMX"),
    ({"avx512f", "avx512_bf16"}, "DEFAULT", True, "AVX512-BF16"),  # not a limit
])
def test_bf16_only_with_bf16_instructions_within_the_users_onednn_limit(
        monkeypatch, flags, limit, fast, named):
    monkeypatch.setattr(devices, "_cpu_flags", lambda: flags)
    found = verdict(limit)
    assert found.fast is fast and named in found.reason, found


@onednn_bf16
def test_without_readable_flags_a_measurement_decides(monkeypatch):
    monkeypatch.setattr(devices, "_cpu_flags", lambda: None)  # macOS, Windows
    found = verdict(None)
    assert found.reason.startswith("measured: a bf16 convolution ran ")
    speedup = float(found.reason.split(" ran ")[1].split("x")[0])
    assert found.fast is (speedup >= 1.25)


def test_the_flags_come_from_the_cpuinfo_flags_line(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx512f "
                       "avx512_bf16\nbugs\t\t: sysret_ss_attrs\n")
    assert devices._cpu_flags(cpuinfo) == {"fpu", "avx512f", "avx512_bf16"}
    assert devices._cpu_flags(tmp_path / "absent") is None
    cpuinfo.write_text("processor\t: 0\nFeatures\t: fp asimd\n")  # an Arm board: no x86 flags
    assert devices._cpu_flags(cpuinfo) is None


def test_onednn_held_below_bf16_is_fp32_whatever_the_cpu_has(monkeypatch):
    monkeypatch.setattr(devices, "_cpu_flags", lambda: {"avx512_bf16", "amx_bf16"})
    found = verdict("AVX2")
    assert not found.fast and "AVX2" in found.reason
