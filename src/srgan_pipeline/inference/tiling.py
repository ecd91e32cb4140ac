"""Run a generator on a whole uint8 image tile by tile: bounded memory, exact result.

Why tiling is exact here (not an approximation that needs blending):

* In eval mode every BatchNorm is a fixed per-channel affine map and PReLU / tanh / PixelShuffle
  are per-pixel, so the network is translation-equivariant and the only thing that couples
  pixels is the convolutions. An output pixel therefore depends only on the LR pixels inside
  the network's receptive field, ``receptive_radius(generator)`` LR pixels on each side
  (conv9 + 2 x 3x3 per residual block + the body conv + the upsampling convs + the tail conv9,
  the last ones counted in LR pixels: 40 for the default 16-block generator, 12 for 2 blocks).
* A tile is cut with ``overlap`` LR pixels of real context on each side (clipped at the image
  border, where untiled inference zero-pads in exactly the same place), and only the outputs of
  its core are kept. The zero padding at a tile's cut edge corrupts outputs only within the
  receptive radius of that edge, so when ``overlap >= receptive_radius`` every kept pixel sees
  exactly the inputs it sees in untiled inference. What is left are float summation-order
  differences between conv calls of different sizes (~1e-6), which can flip the rounding of
  a pixel by one grey level. No blending is needed, and none would make it more exact.
* With a smaller ``overlap`` (faster: less recomputed context) the kept pixels near a cut lose
  far context; the error is then the weights' effective receptive field beyond ``overlap``
  and is only bounded by measurement, not by construction. The default is the exact radius.

In train mode BatchNorm normalises with the statistics of each tile, which would make tiles
disagree; an :class:`~.upscaler.Upscaler` runs an eval-mode copy
(:func:`.fusion.inference_model`), never the caller's module.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from srgan_pipeline.metrics import quantize
from srgan_pipeline.models.generator import hr_to_unit

__all__ = ["DEFAULT_TILE", "receptive_radius", "tile_spans", "upscale_tiles"]

# LR pixels per tile core. Large tiles waste less on recomputed context (a tile runs
# ((tile + 2 * overlap) / tile)^2 times the pixels of its core) and run the convs at their
# most efficient size; 256 LR px (1024 px HR) keeps one tile's activations around 0.5 GB per
# 64-channel HR feature map. Tile sizes compared: benchmarks/upscale.py --tiles.
DEFAULT_TILE = 256


def receptive_radius(generator: nn.Module) -> int:
    """LR pixels on each side of an output pixel that it can depend on (exact upper bound).

    Walks the convolutions in registration order (the forward order of a feed-forward
    generator such as :class:`Generator`; skip connections never widen the receptive field
    beyond the longest path), counting each conv's half-width in LR pixels: after a
    PixelShuffle(r) a pixel is 1/r of an LR pixel.
    """
    radius, factor = 0.0, 1
    for module in generator.modules():
        if isinstance(module, nn.Conv2d):
            sizes = zip(module.kernel_size, module.dilation, strict=True)
            reach = max(dilation * (size - 1) // 2 for size, dilation in sizes)
            radius += reach / factor
        elif isinstance(module, nn.PixelShuffle):
            factor *= module.upscale_factor
        elif isinstance(module, (nn.Upsample, nn.ConvTranspose2d)):
            raise TypeError(f"receptive_radius does not handle {type(module).__name__}")
    return math.ceil(radius)


def tile_spans(length: int, tile: int) -> list[tuple[int, int]]:
    """Split ``range(length)`` into ``ceil(length / tile)`` near-equal (start, stop) cores.

    Near-equal rather than ``tile, tile, ..., remainder``: a 257 px side becomes 129 + 128,
    not 256 + 1 (a 1 px core would still pay for the full overlap on both sides).
    """
    if tile < 1:
        raise ValueError(f"tile must be >= 1, got {tile}")
    count = max(1, math.ceil(length / tile))
    edges = [round(i * length / count) for i in range(count + 1)]
    return list(zip(edges[:-1], edges[1:], strict=True))


def upscale_tiles(
    model: Callable[[torch.Tensor], torch.Tensor],
    lr: np.ndarray,
    *,
    tile: int,
    overlap: int,
    scale: int,
    device: torch.device,
    dtype: torch.dtype,
    memory_format: torch.memory_format,
) -> np.ndarray:
    """Super-resolve a uint8 HxWx3 LR image to a uint8 (sH)x(sW)x3 image, tile by tile.

    Args:
        model: LR in [0, 1] (N, 3, H, W) -> HR in [-1, 1] (N, 3, sH, sW), run as is: an
            eval-mode copy (:func:`~.fusion.inference_model`) or a compiled model; an
            :class:`~.upscaler.Upscaler` says which, and calls this.
        lr: uint8 HxWx3 RGB array.
        tile: LR pixels per tile core (cores are near-equal, at most ``tile`` per side).
        overlap: LR pixels of context kept on each side of a core and discarded after the
            forward pass. ``receptive_radius`` of the generator makes the result equal to
            untiled inference to within float rounding (at most 1 grey level).
        scale: the model's upscaling factor.
        device, dtype, memory_format: what each tile is converted to before the forward pass
            (the model's device and weights' dtype; NHWC lets oneDNN / cuDNN run the convs
            without layout reorders).

    Memory: one tile's activations plus the uint8 output; tiles are processed one at a time
    and written straight into a preallocated output. Conversion: ``hr_to_unit`` then
    :func:`metrics.quantize`, once, as for a saved image.
    """
    lr = np.asarray(lr)
    if lr.dtype != np.uint8 or lr.ndim != 3 or lr.shape[2] != 3:
        raise ValueError(f"expected a uint8 HxWx3 RGB array, got {lr.dtype} {lr.shape}")
    height, width = lr.shape[:2]
    if height == 0 or width == 0:
        raise ValueError(f"cannot upscale an empty image of shape {lr.shape}")
    if overlap < 0:
        raise ValueError(f"overlap must be >= 0, got {overlap}")
    out = np.empty((scale * height, scale * width, 3), dtype=np.uint8)
    with torch.inference_mode():
        # (1, 3, H, W) view of the HWC array: already NHWC-strided. The whole LR image is small
        # (3 bytes per LR pixel vs. 4 * C * s^2 bytes per pixel of one HR feature map); copied
        # when read-only (np.asarray of a PIL image), which torch.from_numpy warns about.
        lr = np.ascontiguousarray(lr)
        if not lr.flags.writeable:
            lr = lr.copy()
        image = torch.from_numpy(lr).permute(2, 0, 1)[None]
        for rows, cols in itertools.product(tile_spans(height, tile), tile_spans(width, tile)):
            pixels = _upscale_core(model, image, rows, cols, overlap=overlap, scale=scale,
                                   device=device, dtype=dtype, memory_format=memory_format)
            (top, bottom), (left, right) = rows, cols
            out[scale * top : scale * bottom, scale * left : scale * right] = pixels
    return out


def _upscale_core(
    model: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    rows: tuple[int, int],
    cols: tuple[int, int],
    *,
    overlap: int,
    scale: int,
    device: torch.device,
    dtype: torch.dtype,
    memory_format: torch.memory_format,
) -> np.ndarray:
    """The uint8 HR pixels of one core (``rows`` x ``cols`` of the LR ``image``).

    The forward pass sees the core plus ``overlap`` LR pixels of context on each side (clipped
    at the image border); only the core's outputs are kept.
    """
    (top, bottom), (left, right) = rows, cols
    height, width = image.shape[-2:]
    y0, y1 = max(0, top - overlap), min(height, bottom + overlap)
    x0, x1 = max(0, left - overlap), min(width, right + overlap)
    x = image[:, :, y0:y1, x0:x1].to(device=device, dtype=dtype)
    y = model((x / 255).contiguous(memory_format=memory_format))
    if y.shape[-2:] != (scale * (y1 - y0), scale * (x1 - x0)):
        raise ValueError(
            f"generator output {tuple(y.shape)} is not x{scale} of its input {tuple(x.shape)}"
        )
    core = y[0, :, scale * (top - y0) : scale * (bottom - y0),
             scale * (left - x0) : scale * (right - x0)]
    pixels = hr_to_unit(core).permute(1, 2, 0).float().cpu().numpy()
    del y, core  # free this tile's output before the next forward
    return quantize(pixels)
