"""The one way a generator runs on images: an :class:`Upscaler`, prepared once, that records
the device, precision and runtime it really runs, its scale and its receptive radius.

Evaluation, upscale and serving build theirs the same way::

    plan = plan_inference(settings.device, settings.precision, settings.tile, settings.runtime,
                          block="upscale")    # checked before any checkpoint is read
    upscaler = plan.prepare(generator)        # BatchNorm folded, or compiled by OpenVINO
    upscaler.upscale(lr_array)                # or upscaler.upscale_image(pillow_image)

:func:`upscale` and :func:`upscale_image` do both steps for one call on a generator.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image
from torch import nn

from srgan_pipeline.devices import DTYPES, pick_device, precision_choice
from srgan_pipeline.inference.fusion import inference_model
from srgan_pipeline.inference.images import upscale_any_mode
from srgan_pipeline.inference.openvino_runtime import OpenVINOModel, import_openvino
from srgan_pipeline.inference.tiling import (
    DEFAULT_TILE,
    features_tile,
    receptive_radius,
    stage_radii,
    upscale_tiles,
    upscale_tiles_in_stages,
)
from srgan_pipeline.names import RUNTIMES
from srgan_pipeline.params.inference import TilePerPrecision

__all__ = ["RUNTIMES", "InferencePlan", "Upscaler", "check_runtime", "plan_inference",
           "upscale", "upscale_image"]

logger = logging.getLogger(__name__)

_PRECISION_OF = {dtype: name for name, dtype in DTYPES.items()}


def check_runtime(runtime: str, device: torch.device, param: str = "runtime") -> None:
    """Raise before any work if ``runtime`` cannot run here (package missing, not a CPU)."""
    if runtime not in RUNTIMES:
        raise ValueError(f"{param} must be one of {list(RUNTIMES)}, got {runtime!r}")
    if runtime == "openvino":
        import_openvino(param)
        if device.type != "cpu":
            raise ValueError(f"{param}=openvino runs on the CPU, but the device is {device}: "
                             f"set the device to cpu, or {param}=torch")


def plan_inference(device: str | torch.device, precision: str, tile: int | TilePerPrecision,
                   runtime: str = "torch", *, block: str | None = None) -> InferencePlan:
    """The inference settings resolved for this machine, and checked, before any checkpoint is
    read; errors name ``<block>.<key>`` (e.g. ``upscale.runtime``).

    ``device``: a name (``auto``: cuda, else mps, else cpu); ``precision``: ``auto`` is bf16
    where the device has bf16 units, else fp32; ``tile``: one LR tile side, or one per
    precision (``tile.fp32`` / ``tile.bf16``: the parameters' :class:`TilePerPrecision`).
    """
    device = device if isinstance(device, torch.device) else pick_device(device)
    precision, why = precision_choice(precision, device, _key(block, "precision"))
    tile = tile if isinstance(tile, int) else getattr(tile, precision)
    return InferencePlan(device, precision, tile, runtime, block=block,  # checks the runtime
                         precision_reason=why)


@dataclass(frozen=True)
class InferencePlan:
    """Where and how generators are to run: what :meth:`prepare` asks of the runtime.

    ``precision`` is "fp32" or "bf16" (``auto`` resolved by :func:`plan_inference`), ``tile``
    the LR tile side; ``block`` names the parameters in messages.
    """

    device: torch.device
    precision: str
    tile: int
    runtime: str = "torch"
    channels_last: bool = True  # NHWC: oneDNN / cuDNN run the convs without layout reorders
    block: str | None = None
    precision_reason: str = ""  # why ``precision`` (devices.precision_choice), for the tags

    def __post_init__(self) -> None:
        if self.precision not in DTYPES:
            raise ValueError(f"{self._key('precision')} must be one of {list(DTYPES)} here "
                             f"(plan_inference resolves auto), got {self.precision!r}")
        if not (isinstance(self.tile, int) and self.tile >= 1):
            raise ValueError(f"{self._key('tile')} must be an integer >= 1, got {self.tile!r}")
        check_runtime(self.runtime, self.device, self._key("runtime"))

    def prepare(self, generator: nn.Module) -> Upscaler:
        """``generator`` ready to run, once: an eval-mode copy with BatchNorm folded
        (:func:`~.fusion.inference_model`), or that copy compiled by OpenVINO. The original
        is left as it is."""
        if self.runtime == "openvino":
            model = OpenVINOModel(generator, precision=self.precision, param=self._key("runtime"))
            precision, channels_last = model.precision, False  # float32 NCHW in and out
            if precision != self.precision:
                logger.warning("%s=%s: OpenVINO runs %s on this CPU", self._key("precision"),
                               self.precision, precision)
        else:
            model = inference_model(generator, device=self.device,
                                    channels_last=self.channels_last, precision=self.precision)
            precision, channels_last = self.precision, self.channels_last
        scale = getattr(generator, "scale", None) or _measured_scale(model, self.device)
        # the tile stays the plan's when OpenVINO runs another precision: the one asked for
        return Upscaler(model=model, device=self.device, precision=precision,
                        runtime=self.runtime, tile=self.tile, channels_last=channels_last,
                        scale=scale, receptive_radius=receptive_radius(generator),
                        # the copy's stages, each reaching as far as the generator's
                        stage_radii=stage_radii(generator) if stage_radii(model) else None)

    def _key(self, name: str) -> str:
        return _key(self.block, name)


@dataclass(frozen=True)
class Upscaler:
    """A generator prepared to run on images (:meth:`InferencePlan.prepare`), and how it runs.

    ``device``, ``precision`` and ``runtime`` are those it really runs (OpenVINO runs fp32 on
    a CPU without bf16 units, whatever was asked); ``tile`` is the LR tile side; ``scale`` and
    ``receptive_radius`` are the generator's (that radius of overlap makes tiles exact).
    """

    model: Callable[[torch.Tensor], torch.Tensor] = field(repr=False)
    device: torch.device
    precision: str
    runtime: str
    tile: int
    channels_last: bool
    scale: int
    receptive_radius: int
    # (features, reconstruct) reach of a model run in its two stages (tiling.stage_radii);
    # None: run whole, each tile with the receptive radius of context (OpenVINO's compiled model)
    stage_radii: tuple[int, int] | None = None

    def upscale(self, lr: np.ndarray, *, overlap: int | None = None) -> np.ndarray:
        """A uint8 HxWx3 RGB array -> uint8 (sH)x(sW)x3, tile by tile (:mod:`.tiling`).

        ``overlap`` None: the receptive radius (exact to float rounding); less is faster, and
        approximate near the tiles' seams.
        """
        dtype = DTYPES[self.precision] if self.runtime == "torch" else torch.float32
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        if overlap is None and self.stage_radii is not None:  # exact, with less recomputed
            return upscale_tiles_in_stages(
                self.model, lr, tile=self.tile,
                feature_tile=features_tile(self.tile, self.precision),
                radii=self.stage_radii, scale=self.scale, device=self.device, dtype=dtype,
                memory_format=memory_format)
        return upscale_tiles(
            self.model, lr, tile=self.tile,
            overlap=self.receptive_radius if overlap is None else overlap, scale=self.scale,
            device=self.device, dtype=dtype, memory_format=memory_format)

    def upscale_image(self, image: Image.Image) -> Image.Image:
        """A Pillow image of any mode, upscaled; its colour family kept (:mod:`.images`)."""
        return upscale_any_mode(self.upscale, image)


def upscale(generator: nn.Module, lr: np.ndarray, *, tile: int = DEFAULT_TILE,
            overlap: int | None = None, device: torch.device | str | None = None,
            channels_last: bool = True, precision: str | None = None) -> np.ndarray:
    """``lr`` (uint8 HxWx3) through ``generator`` once: prepare, then :meth:`Upscaler.upscale`.

    Copies the generator on each call (milliseconds): for many images, prepare an
    :class:`Upscaler` once. ``device`` None: where the generator's parameters are;
    ``precision`` None: its weights' ("fp32" for a trained generator).
    """
    return _prepared_once(generator, tile, device, channels_last, precision).upscale(
        lr, overlap=overlap)


def upscale_image(generator: nn.Module, image: Image.Image, scale: int | None = None, *,
                  tile: int = DEFAULT_TILE, overlap: int | None = None,
                  device: torch.device | str | None = None, channels_last: bool = True,
                  precision: str | None = None) -> Image.Image:
    """A Pillow image of any mode through ``generator`` once (see :func:`upscale`); the
    output mode mirrors the input family (:func:`~.images.upscale_any_mode`).

    ``scale``, when given, must equal the generator's ``scale`` (a check, not a resize).
    """
    gen_scale = getattr(generator, "scale", None)
    if scale is not None and gen_scale is not None and scale != gen_scale:
        raise ValueError(f"scale={scale} but the generator upscales x{gen_scale}")
    upscaler = _prepared_once(generator, tile, device, channels_last, precision)
    return upscale_any_mode(lambda rgb: upscaler.upscale(rgb, overlap=overlap), image)


def _key(block: str | None, name: str) -> str:
    """A parameter's name in messages: ``upscale.precision``, or ``precision`` alone."""
    return f"{block}.{name}" if block else name


def _prepared_once(generator: nn.Module, tile: int, device: torch.device | str | None,
                   channels_last: bool, precision: str | None) -> Upscaler:
    weights = next(generator.parameters())
    device = weights.device if device is None else torch.device(device)
    precision = _PRECISION_OF.get(weights.dtype, "fp32") if precision is None else precision
    plan = InferencePlan(device, precision, tile, channels_last=channels_last)
    return plan.prepare(generator)


def _measured_scale(model: Callable[[torch.Tensor], torch.Tensor], device: torch.device) -> int:
    """The upscaling factor of a model that does not name it: one 8 x 8 forward pass."""
    dtype = next(model.parameters()).dtype if isinstance(model, nn.Module) else torch.float32
    with torch.inference_mode():
        return model(torch.zeros(1, 3, 8, 8, device=device, dtype=dtype)).shape[-1] // 8
