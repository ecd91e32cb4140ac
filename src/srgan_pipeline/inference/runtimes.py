"""Which runtime runs the generator: PyTorch (default) or OpenVINO (optional, CPU only)."""

from __future__ import annotations

import torch
from torch import nn

from srgan_pipeline.inference.fusion import inference_model
from srgan_pipeline.inference.openvino_runtime import OpenVINOModel, import_openvino
from srgan_pipeline.names import RUNTIMES

__all__ = ["RUNTIMES", "check_runtime", "prepared_generator"]


def check_runtime(runtime: str, device: torch.device, param: str = "runtime") -> None:
    """Raise before any work if ``runtime`` cannot run here (package missing, not a CPU)."""
    if runtime not in RUNTIMES:
        raise ValueError(f"{param} must be one of {list(RUNTIMES)}, got {runtime!r}")
    if runtime == "openvino":
        import_openvino(param)
        if device.type != "cpu":
            raise ValueError(f"{param}=openvino runs on the CPU, but the device is {device}: "
                             f"set the device to cpu, or {param}=torch")


def prepared_generator(
    generator: nn.Module, *, runtime: str, device: torch.device, precision: str,
    param: str = "runtime",
) -> nn.Module | OpenVINOModel:
    """What :func:`~.tiling.upscale` runs, prepared once: an :func:`inference_model` copy, or
    that copy compiled by OpenVINO (whose ``precision`` is the one it actually runs)."""
    check_runtime(runtime, device, param)
    if runtime == "openvino":
        return OpenVINOModel(generator, precision=precision, param=param)
    return inference_model(generator, device=device, precision=precision)
