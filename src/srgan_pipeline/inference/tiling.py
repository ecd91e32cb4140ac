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
* The context is recomputed work: 40 LR px around a 256 px core is 72 % more pixels. A
  :class:`Generator` is therefore run in its two stages (:func:`upscale_tiles_in_stages`): the
  LR-resolution features (head and residual blocks: 37 of the 40 px of radius, and about half
  the FLOPs, at a quarter of the HR part's memory per LR pixel) on larger tiles, then the HR
  reconstruction on the usual tiles from those features, with only its own 3 px of context.
  The same argument makes each stage exact: a stage's kept outputs are at least its own radius
  from any cut.
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

__all__ = ["DEFAULT_TILE", "FEATURE_TILE_FACTOR", "features_tile", "receptive_radius",
           "stage_radii",
           "tile_spans", "upscale_tiles", "upscale_tiles_in_stages"]

# LR pixels per tile core. Large tiles waste less on recomputed context (a tile runs
# ((tile + 2 * overlap) / tile)^2 times the pixels of its core) and run the convs at their
# most efficient size; 256 LR px (1024 px HR) keeps one tile's activations around 0.5 GB per
# 64-channel HR feature map. Tile sizes compared: benchmarks/upscale.py --tiles.
DEFAULT_TILE = 256

# The features stage's tile side, in HR-stage tiles, per precision. Larger means less
# recomputed context (a 384 px core reads 46 % more pixels in that stage, a 256 px one 72 %),
# but a 64-channel LR map that outgrows the last-level cache slows every conv: on a Zen 4
# (32 MB L3) a features pass costs the same per pixel up to a 464 px read in bf16 (28 MB a
# map) and 30 % more at 592; in fp32 (twice the bytes) already 36 % more at 464. Measured with
# benchmarks/upscale.py --large (benchmarks/results/, the large-image note). The HR stage's
# activations per LR pixel are about 4x the features stage's, so the peak memory stays near
# one HR tile's.
FEATURE_TILE_FACTOR = {"fp32": 1.0, "bf16": 1.5}


def features_tile(tile: int, precision: str) -> int:
    """The features stage's LR tile side for HR-stage tiles of ``tile`` in ``precision``."""
    return max(1, round(FEATURE_TILE_FACTOR[precision] * tile))


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


def stage_radii(generator: nn.Module) -> tuple[int, int] | None:
    """LR pixels of reach of ``generator.features`` and of ``generator.reconstruct`` (None for
    a model without the two stages, e.g. one compiled by OpenVINO). The bicubic input skip
    reads 2 LR pixels on each side."""
    if not hasattr(generator, "stage_modules"):
        return None
    features, reconstruct = generator.stage_modules()
    skip = 2 if getattr(generator, "input_skip", False) else 0
    return receptive_radius(features), max(receptive_radius(reconstruct), skip)


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
    lr = _checked(lr)
    if overlap < 0:
        raise ValueError(f"overlap must be >= 0, got {overlap}")
    height, width = lr.shape[:2]
    out = np.empty((scale * height, scale * width, 3), dtype=np.uint8)
    with torch.inference_mode():
        image = _as_tensor(lr)
        for rows, cols in itertools.product(tile_spans(height, tile), tile_spans(width, tile)):
            # the core plus ``overlap`` LR pixels of context (clipped at the image border)
            span = _grown(rows, overlap, height), _grown(cols, overlap, width)
            x = _tile_input(image, *span, device=device, dtype=dtype, memory_format=memory_format)
            _write_core(out, model(x), rows, cols, span, scale)
    return out


def upscale_tiles_in_stages(
    model: nn.Module,
    lr: np.ndarray,
    *,
    tile: int,
    feature_tile: int,
    radii: tuple[int, int],
    scale: int,
    device: torch.device,
    dtype: torch.dtype,
    memory_format: torch.memory_format,
) -> np.ndarray:
    """:func:`upscale_tiles` for a model with ``features`` and ``reconstruct`` (a
    :class:`Generator`): the features on cores of ``feature_tile`` LR px, each with
    ``radii[0] + radii[1]`` of context, then the HR part on cores of ``tile`` inside them,
    each with ``radii[1]`` (:func:`stage_radii`). Equal to untiled inference to float
    rounding (at most 1 grey level), as :func:`upscale_tiles` with the whole radius is.

    Memory: one features tile (its activations, then the features kept) plus one HR tile's
    activations, plus the uint8 output.
    """
    lr = _checked(lr)
    features_reach, reconstruct_reach = radii
    height, width = lr.shape[:2]
    out = np.empty((scale * height, scale * width, 3), dtype=np.uint8)
    with torch.inference_mode():
        image = _as_tensor(lr)
        for rows, cols in itertools.product(tile_spans(height, feature_tile),
                                            tile_spans(width, feature_tile)):
            # the features of the core and of the context the HR part reads around it, exact:
            # computed from features_reach more LR pixels, which are then dropped
            kept = _grown(rows, reconstruct_reach, height), _grown(cols, reconstruct_reach, width)
            read = _grown(kept[0], features_reach, height), _grown(kept[1], features_reach, width)
            x = _tile_input(image, *read, device=device, dtype=dtype, memory_format=memory_format)
            inside = _relative(kept, read)
            feat, x = model.features(x)[inside], x[inside]
            for sub_rows, sub_cols in itertools.product(_spans_within(rows, tile),
                                                        _spans_within(cols, tile)):
                span = (_grown(sub_rows, reconstruct_reach, height),
                        _grown(sub_cols, reconstruct_reach, width))  # inside ``kept``
                part = _relative(span, kept)
                y = model.reconstruct(x[part].contiguous(memory_format=memory_format),
                                      feat[part].contiguous(memory_format=memory_format))
                _write_core(out, y, sub_rows, sub_cols, span, scale)
            del feat, x  # this features tile's, before the next one's
    return out


def _checked(lr: np.ndarray) -> np.ndarray:
    lr = np.asarray(lr)
    if lr.dtype != np.uint8 or lr.ndim != 3 or lr.shape[2] != 3:
        raise ValueError(f"expected a uint8 HxWx3 RGB array, got {lr.dtype} {lr.shape}")
    if lr.shape[0] == 0 or lr.shape[1] == 0:
        raise ValueError(f"cannot upscale an empty image of shape {lr.shape}")
    return lr


def _as_tensor(lr: np.ndarray) -> torch.Tensor:
    """(1, 3, H, W) view of the HWC array: already NHWC-strided. The whole LR image is small
    (3 bytes per LR pixel vs. 4 * C * s^2 bytes per pixel of one HR feature map); copied when
    read-only (np.asarray of a PIL image), which torch.from_numpy warns about."""
    lr = np.ascontiguousarray(lr)
    if not lr.flags.writeable:
        lr = lr.copy()
    return torch.from_numpy(lr).permute(2, 0, 1)[None]


def _grown(span: tuple[int, int], by: int, length: int) -> tuple[int, int]:
    """``span`` widened by ``by`` on each side, clipped to ``range(length)``."""
    return max(0, span[0] - by), min(length, span[1] + by)


def _spans_within(span: tuple[int, int], tile: int) -> list[tuple[int, int]]:
    """:func:`tile_spans` of ``span``, in the coordinates ``span`` is in."""
    return [(span[0] + a, span[0] + b) for a, b in tile_spans(span[1] - span[0], tile)]


def _relative(spans, origin) -> tuple[slice, ...]:
    """The NCHW index of the (rows, cols) ``spans`` in a tensor cut at (rows, cols) ``origin``."""
    (r0, r1), (c0, c1) = spans
    (o_rows, _), (o_cols, _) = origin
    return (slice(None), slice(None), slice(r0 - o_rows, r1 - o_rows),
            slice(c0 - o_cols, c1 - o_cols))


def _tile_input(image: torch.Tensor, rows: tuple[int, int], cols: tuple[int, int], *,
                device: torch.device, dtype: torch.dtype, memory_format: torch.memory_format
                ) -> torch.Tensor:
    """The uint8 image's (rows, cols) as the model's input: [0, 1], its device and dtype."""
    x = image[:, :, rows[0]:rows[1], cols[0]:cols[1]].to(device=device, dtype=dtype)
    return (x / 255).contiguous(memory_format=memory_format)


def _write_core(out: np.ndarray, y: torch.Tensor, rows: tuple[int, int], cols: tuple[int, int],
                read: tuple[tuple[int, int], tuple[int, int]], scale: int) -> None:
    """Quantise the HR pixels of the core (``rows`` x ``cols``) of the output ``y`` of the LR
    region ``read`` into ``out``; the rest of ``y`` (its context) is dropped."""
    (y0, y1), (x0, x1) = read
    if y.shape[-2:] != (scale * (y1 - y0), scale * (x1 - x0)):
        raise ValueError(f"generator output {tuple(y.shape)} is not x{scale} of its input "
                         f"({y1 - y0}, {x1 - x0})")
    (top, bottom), (left, right) = rows, cols
    core = y[0, :, scale * (top - y0) : scale * (bottom - y0),
             scale * (left - x0) : scale * (right - x0)]
    out[scale * top : scale * bottom, scale * left : scale * right] = quantize(
        hr_to_unit(core).permute(1, 2, 0).float().cpu().numpy())
