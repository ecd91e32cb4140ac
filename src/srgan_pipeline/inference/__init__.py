"""Run a trained generator on whole images: tiled, bounded memory, any Pillow mode.

* :mod:`.upscaler`: the seam evaluation, upscale and serving share. :func:`plan_inference`
  resolves and checks the inference settings; :meth:`InferencePlan.prepare` turns a
  generator into an :class:`Upscaler`, which records the device, precision and runtime it
  really runs, its scale and receptive radius, and upscales arrays and images.
* :mod:`.fusion`: the inference copy of a generator (eval mode, BatchNorm folded into the
  convs, tail conv moved before the last PixelShuffle): same function, fewer ops.
* :mod:`.openvino_runtime`: that copy compiled by OpenVINO for the CPU (an optional extra).
* :mod:`.tiling`: a uint8 RGB array through any such model tile by tile, with the overlap
  (:func:`receptive_radius`) that makes tiles agree with untiled inference.
* :mod:`.images`: a Pillow image of any mode (grey, alpha, 16-bit, EXIF-rotated) in, the
  same colour family out.
"""

from srgan_pipeline.inference.fusion import inference_model
from srgan_pipeline.inference.tiling import DEFAULT_TILE, receptive_radius, tile_spans
from srgan_pipeline.inference.upscaler import (
    RUNTIMES,
    InferencePlan,
    Upscaler,
    check_runtime,
    plan_inference,
    upscale,
    upscale_image,
)

__all__ = [
    "DEFAULT_TILE",
    "RUNTIMES",
    "InferencePlan",
    "Upscaler",
    "check_runtime",
    "inference_model",
    "plan_inference",
    "receptive_radius",
    "tile_spans",
    "upscale",
    "upscale_image",
]
