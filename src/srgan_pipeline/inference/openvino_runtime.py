"""A generator compiled by OpenVINO for the CPU: the optional ``runtime: openvino``.

On CPUs with AMX, OpenVINO's bf16 convolutions run the default generator well above PyTorch's
eager bf16 (benchmarks/results/, the upscale
and serving note; benchmarks/upscale.py --openvino). OpenVINO is an optional
extra (``pip install -e ".[openvino]"``); PyTorch stays the default runtime and the fallback.

:class:`OpenVINOModel` is what an :class:`~.upscaler.Upscaler` of ``runtime`` openvino runs in
place of a torch module: a callable float32 NCHW tensor -> float32 NCHW tensor, compiled once
with dynamic height and width, so every tile shape (cores clipped at the image border) reuses
it.
"""

from __future__ import annotations

import sys
import warnings
from types import ModuleType

import torch
from torch import nn

from srgan_pipeline.inference.fusion import inference_model

__all__ = ["INSTALL_HINT", "OpenVINOModel", "import_openvino"]

INSTALL_HINT = 'pip install -e ".[openvino]"'
# OpenVINO's own names for the two inference precisions of its CPU plugin
_OV_PRECISION = {"fp32": "f32", "bf16": "bf16"}


def import_openvino(param: str = "runtime") -> ModuleType:
    """The ``openvino`` module, imported with its usage telemetry off; a clear error without it.

    ``import openvino`` imports its model converter, which sends usage events to Google
    Analytics unless the user opted out (a consent file in the home folder; no file counts as
    consent) and writes ~/intel/. The converter falls back to its own no-op stub when
    ``openvino_telemetry`` cannot be imported, so that import is made to fail while openvino
    loads: the project keeps its promise that only the download nodes use the network
    (docs/tracking.md, "Telemetry"), without touching the user's opt-in file.
    """
    if sys.modules.get("openvino") is not None:
        return sys.modules["openvino"]
    blocked = "openvino_telemetry" not in sys.modules
    if blocked:
        sys.modules["openvino_telemetry"] = None  # type: ignore[assignment]  # import -> error
    try:
        import openvino
    except ImportError:
        raise ImportError(
            f"{param}=openvino needs the OpenVINO package, which is not installed: "
            f"{INSTALL_HINT} (or pip install openvino), or set {param}=torch"
        ) from None
    finally:
        if blocked:
            del sys.modules["openvino_telemetry"]
    return openvino


class OpenVINOModel:
    """A generator's :func:`inference_model` copy compiled by OpenVINO for the CPU.

    Same function as the torch copy (BatchNorm folded, tail conv before the last shuffle)
    to float rounding; ``precision`` "bf16" runs it on the bf16 units (AMX / AVX512-BF16).
    Where the CPU has none, OpenVINO runs float32: :attr:`precision` is what it actually
    runs, read back from the compiled model. Threads: as many as torch uses
    (``torch.get_num_threads()``), so ``OMP_NUM_THREADS`` and ``torch.set_num_threads``
    bound both runtimes alike.
    """

    def __init__(self, generator: nn.Module, *, precision: str = "fp32",
                 param: str = "runtime") -> None:
        if precision not in _OV_PRECISION:
            raise ValueError(f"precision must be one of {list(_OV_PRECISION)}, got {precision!r}")
        ov = import_openvino(param)
        model = inference_model(generator, device="cpu", channels_last=False)
        example = torch.rand(1, 3, 32, 32)
        with warnings.catch_warnings():
            # the generator's input checks, frozen by tracing; and OpenVINO's own use of
            # torch.jit.trace_method, deprecated by torch (nothing the user can act on)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", FutureWarning)
            converted = ov.convert_model(model, example_input=example, input=[1, 3, -1, -1])
        self._compiled = ov.Core().compile_model(converted, "CPU", {
            "INFERENCE_PRECISION_HINT": _OV_PRECISION[precision],
            "PERFORMANCE_HINT": "LATENCY",  # one image at a time: all threads on one request
            "INFERENCE_NUM_THREADS": torch.get_num_threads(),
        })
        effective = self._compiled.get_property("INFERENCE_PRECISION_HINT")
        self.precision = "bf16" if effective == ov.Type.bf16 else "fp32"
        self._request = self._compiled.create_infer_request()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """LR in [0, 1] (N, 3, H, W) float32 -> HR in [-1, 1] (N, 3, sH, sW) float32."""
        # infer() copies the output out of the request's buffer (share_outputs=False)
        output = self._request.infer({0: x.float().contiguous().numpy()})[0]
        return torch.from_numpy(output)
