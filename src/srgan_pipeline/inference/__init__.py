"""Run a trained generator on whole images: tiled, bounded memory, any Pillow mode.

* :mod:`.fusion`: the inference copy of a generator (eval mode, BatchNorm folded into the
  convs, tail conv moved before the last PixelShuffle): same function, fewer ops.
* :mod:`.tiling`: :func:`upscale`, a uint8 RGB array through that copy tile by tile, with the
  overlap (:func:`receptive_radius`) that makes tiles agree with untiled inference.
* :mod:`.images`: :func:`upscale_image`, a Pillow image of any mode (grey, alpha, 16-bit,
  EXIF-rotated) in, the same colour family out.
* :mod:`.runtimes`: :func:`prepared_generator`, that copy for PyTorch, or compiled by
  OpenVINO (:mod:`.openvino_runtime`, an optional extra) for the CPU.
"""

from srgan_pipeline.inference.fusion import inference_model
from srgan_pipeline.inference.images import upscale_image
from srgan_pipeline.inference.runtimes import RUNTIMES, check_runtime, prepared_generator
from srgan_pipeline.inference.tiling import DEFAULT_TILE, receptive_radius, tile_spans, upscale

__all__ = [
    "DEFAULT_TILE",
    "RUNTIMES",
    "check_runtime",
    "inference_model",
    "prepared_generator",
    "receptive_radius",
    "tile_spans",
    "upscale",
    "upscale_image",
]
