"""Run a trained generator on whole images: tiled, bounded memory, any Pillow mode.

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
disagree; :func:`upscale` runs an eval-mode copy (:func:`inference_model`), never the caller's
module.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from srgan_pipeline.devices import DTYPES
from srgan_pipeline.imaging import GREY_MODES, has_alpha, imresize, to_rgb_array
from srgan_pipeline.metrics import quantize
from srgan_pipeline.models.generator import (
    Generator,
    ResidualBlock,
    UpsampleBlock,
    hr_to_unit,
)

__all__ = [
    "DEFAULT_TILE",
    "inference_model",
    "receptive_radius",
    "tile_spans",
    "upscale",
    "upscale_image",
]

# LR pixels per tile core. Large tiles waste less on recomputed context (with the default
# generator's 40 px overlap: 1.72x the pixels of the core at 256, 2.64x at 128) and run the
# convs at their most efficient size; 256 LR px (1024 px HR) keeps one tile's activations
# around 0.5 GB per 64-channel HR feature map. See benchmarks/upscale.py.
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


def upscale(
    generator: nn.Module,
    lr: np.ndarray,
    *,
    tile: int = DEFAULT_TILE,
    overlap: int | None = None,
    device: torch.device | str | None = None,
    channels_last: bool = True,
    precision: str | None = None,
) -> np.ndarray:
    """Super-resolve a uint8 HxWx3 LR image to a uint8 (sH)x(sW)x3 image, tile by tile.

    Args:
        generator: LR in [0, 1] (N, 3, H, W) -> HR in [-1, 1] (N, 3, sH, sW). Not modified:
            the forward passes run on :func:`inference_model`'s copy (eval mode, BatchNorm
            folded, tail conv before the last shuffle), whatever mode the original is in.
        lr: uint8 HxWx3 RGB array.
        tile: LR pixels per tile core (cores are near-equal, at most ``tile`` per side).
        overlap: LR pixels of context kept on each side of a core and discarded after the
            forward pass. None (default): ``receptive_radius(generator)``, which makes the
            result equal to untiled inference to within float rounding (at most 1 grey level).
        device: where to run; None: the device of the generator's parameters.
        channels_last: run model and input in NHWC memory format (oneDNN / cuDNN run the
            convs without layout reorders).
        precision: "fp32" or "bf16" weights and activations (see :func:`inference_model`);
            None: "fp32", or the precision of an :func:`inference_model` copy passed in.

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
    if overlap is None:
        overlap = receptive_radius(generator)
    if overlap < 0:
        raise ValueError(f"overlap must be >= 0, got {overlap}")

    param = next(generator.parameters())
    device = param.device if device is None else torch.device(device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    same_device = param.device.type == device.type and device.index in (None, param.device.index)
    prepared = getattr(generator, "_inference_setup", None)  # (channels_last, precision)
    if precision is None:
        precision = prepared[1] if prepared else "fp32"
    if prepared == (channels_last, precision) and same_device:
        model = generator  # already an inference_model copy: reuse it (no per-call copy)
    else:
        model = inference_model(generator, device=device, channels_last=channels_last,
                                precision=precision)
    dtype = next(model.parameters()).dtype

    scale = getattr(generator, "scale", None)
    out: np.ndarray | None = None
    with torch.inference_mode():
        # (1, 3, H, W) view of the HWC array: already NHWC-strided. The whole LR image is small
        # (3 bytes per LR pixel vs. 4 * C * s^2 bytes per pixel of one HR feature map); copied
        # when read-only (np.asarray of a PIL image), which torch.from_numpy warns about.
        lr = np.ascontiguousarray(lr)
        if not lr.flags.writeable:
            lr = lr.copy()
        image = torch.from_numpy(lr).permute(2, 0, 1)[None]
        for top, bottom in tile_spans(height, tile):
            for left, right in tile_spans(width, tile):
                y0, y1 = max(0, top - overlap), min(height, bottom + overlap)
                x0, x1 = max(0, left - overlap), min(width, right + overlap)
                x = image[:, :, y0:y1, x0:x1].to(device=device, dtype=dtype)
                y = model((x / 255).contiguous(memory_format=memory_format))
                if scale is None:
                    scale = y.shape[-1] // x.shape[-1]
                if y.shape[-2:] != (scale * (y1 - y0), scale * (x1 - x0)):
                    raise ValueError(
                        f"generator output {tuple(y.shape)} is not x{scale} of its input "
                        f"{tuple(x.shape)}"
                    )
                if out is None:
                    out = np.empty((scale * height, scale * width, 3), dtype=np.uint8)
                core = y[
                    0,
                    :,
                    scale * (top - y0) : scale * (bottom - y0),
                    scale * (left - x0) : scale * (right - x0),
                ]
                pixels = hr_to_unit(core).permute(1, 2, 0).float().cpu().numpy()
                del y, core  # free this tile's output before the next forward
                out[scale * top : scale * bottom, scale * left : scale * right] = quantize(pixels)
    assert out is not None
    return out


# --------------------------------------------------------------------------------------------
# The inference copy of a generator
# --------------------------------------------------------------------------------------------


def inference_model(
    generator: nn.Module,
    *,
    device: torch.device | str | None = None,
    channels_last: bool = True,
    precision: str = "fp32",
) -> nn.Module:
    """A copy of ``generator`` rewritten for fast eval-mode inference; the original is untouched.

    :func:`upscale` makes one per call (milliseconds); to upscale many images, make it once
    and pass it to :func:`upscale` instead of the generator (it is then used as is, when
    ``channels_last`` and the device match). Same function (to float rounding, <= 1 grey level
    after quantising), fewer and cheaper ops:

    * eval mode, no gradients, moved to ``device``, NHWC weights when ``channels_last``,
      bf16 weights when ``precision`` is "bf16" (``devices.resolve_precision`` picks it
      where the hardware has bf16 units; the input tile is cast to the weights' dtype);
    * every BatchNorm2d that directly follows a Conv2d (in a Sequential, or conv1/bn1 and
      conv2/bn2 of a ResidualBlock) is folded into that conv: in eval mode it is a fixed
      per-channel affine map (33 BatchNorm passes over the feature maps saved at 16 blocks);
    * for a :class:`Generator`, the tail conv (9x9, C -> 3, at full HR resolution: on CPU it
      runs at a quarter of the speed of the body convs because of its 3 output channels) is
      re-expressed before the last PixelShuffle(r): a 5x5 conv, C*r^2 -> 3*r^2 channels, at
      1/r of the resolution, followed by PixelShuffle(r), with the last PReLU's slopes
      repeated r^2 times so that it can run before the shuffle. Exact algebra (see
      :func:`_tail_before_shuffle`), 3x faster for that layer, and it also skips shuffling
      the 64-channel map to full resolution.
    """
    # Hundreds of small tensor ops (clones, folds, layout changes), each just above torch's
    # parallel grain size: with one thread they take ~15 ms in all; with two, every op pays an
    # OpenMP wake-up, which costs ~1 s in all when other processes keep the cores busy.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = copy.deepcopy(generator).eval().requires_grad_(False)
        with torch.no_grad():
            _fold_batchnorm(model)
            if isinstance(model, Generator):
                _tail_before_shuffle(model)
        if device is not None:
            model.to(device)
        if channels_last:
            model.to(memory_format=torch.channels_last)
        # bf16 after folding, so the folded weights are rounded once. The tile's output is
        # cast back to float32 before quantising: bf16 keeps 8 significant bits, about one
        # grey level near white, far below an SR model's error (README: bf16 vs fp32).
        model.to(dtype=DTYPES[precision])
    finally:
        torch.set_num_threads(threads)
    model._inference_setup = (channels_last, precision)  # lets upscale() reuse this copy
    return model


def _fold_batchnorm(model: nn.Module) -> None:
    """Fold each BatchNorm2d that consumes a Conv2d's output into it (model in eval mode)."""
    pairs = []
    for module in model.modules():
        if isinstance(module, nn.Sequential):
            pairs += [(module, str(i), str(i + 1)) for i in range(len(module) - 1)]
        elif isinstance(module, ResidualBlock):  # residual() is bn1(conv1(.)), bn2(conv2(.))
            pairs += [(module, "conv1", "bn1"), (module, "conv2", "bn2")]
    for parent, conv_name, bn_name in pairs:
        conv, bn = getattr(parent, conv_name), getattr(parent, bn_name)
        # Without running statistics, BatchNorm normalises with the batch's own statistics
        # even in eval mode: not an affine map, so it cannot be folded (nor tiled exactly).
        if (
            isinstance(conv, nn.Conv2d)
            and isinstance(bn, nn.BatchNorm2d)
            and bn.running_mean is not None
        ):
            setattr(parent, conv_name, fuse_conv_bn_eval(conv, bn))
            setattr(parent, bn_name, nn.Identity())


def _tail_before_shuffle(model: Generator) -> None:
    """Move the tail conv in front of the last PixelShuffle (see :func:`inference_model`).

    With r the shuffle factor, k = 2R + 1 the tail kernel, an HR pixel Y = r*y + p reads the HR
    inputs Y + d, d in [-R, R], i.e. the pre-shuffle pixel y + floor((p + d) / r) of phase
    channel i = (p + d) mod r. So the tail is a conv on the pre-shuffle map with output channel
    (o, p, q), input channel (c, i, j) and taps at offsets floor((p + d) / r), followed by
    PixelShuffle(r). HR zero padding is pre-shuffle zero padding, so borders match too.
    """
    last, tail = model.upsample[-1], model.tail
    if not (
        isinstance(last, UpsampleBlock)
        and isinstance(last.act, nn.PReLU)
        and isinstance(tail, nn.Conv2d)
        and tail.kernel_size[0] == tail.kernel_size[1]
        and tail.kernel_size[0] % 2 == 1
        and tail.padding == (tail.kernel_size[0] // 2,) * 2
        and tail.stride == (1, 1)
        and tail.dilation == (1, 1)
        and tail.groups == 1
        and tail.padding_mode == "zeros"
    ):
        return
    r, half = last.shuffle.upscale_factor, tail.kernel_size[0] // 2
    reach = max(-((-half) // r), (r - 1 + half) // r)  # pre-shuffle taps each side
    size = 2 * reach + 1
    out_ch, in_ch = tail.out_channels, tail.in_channels
    weight = tail.weight.new_zeros(out_ch, r, r, in_ch, r, r, size, size)
    for p in range(r):
        for dy in range(-half, half + 1):
            ky, i = divmod(p + dy, r)
            for q in range(r):
                for dx in range(-half, half + 1):
                    kx, j = divmod(q + dx, r)
                    weight[:, p, q, :, i, j, ky + reach, kx + reach] = tail.weight[
                        :, :, dy + half, dx + half
                    ]
    conv = nn.Conv2d(in_ch * r * r, out_ch * r * r, size, padding=reach, bias=tail.bias is not None)
    conv = conv.to(tail.weight.device, tail.weight.dtype)
    conv.weight.copy_(weight.reshape(out_ch * r * r, in_ch * r * r, size, size))
    if tail.bias is not None:
        conv.bias.copy_(tail.bias.repeat_interleave(r * r))
    act = nn.PReLU(1 if last.act.num_parameters == 1 else last.conv.out_channels)
    act = act.to(last.act.weight.device, last.act.weight.dtype)
    act.weight.copy_(last.act.weight.repeat_interleave(1 if act.num_parameters == 1 else r * r))
    model.upsample[-1] = nn.Sequential(last.conv, act)  # C -> C r^2, not shuffled
    model.tail = nn.Sequential(conv, nn.PixelShuffle(r))
    model.requires_grad_(False)


def upscale_image(
    generator: nn.Module, image: Image.Image, scale: int | None = None, **kwargs
) -> Image.Image:
    """Super-resolve a Pillow image of any mode; the output mode mirrors the input family.

    * EXIF orientation is applied first, so the output is upright (and, for a rotated photo,
      has the rotated size) and carries no orientation tag.
    * Grey (1, L, I;16*, I, F) -> 'L': the grey image goes through the generator as RGB
      (16-bit grey reduced to 8 bit by :func:`imaging.to_rgb_array`) and the result is
      converted back to 'L' (BT.601 luma). Output is 8-bit even for 16-bit input.
    * With alpha (RGBA, LA, PA, P/L/RGB with tRNS, premultiplied RGBa/La) -> 'RGBA' or 'LA':
      the straight (un-premultiplied) colours go through the generator; the alpha channel is
      upscaled with MATLAB bicubic (:func:`imaging.imresize`) and re-attached. Colours are *not*
      composited onto white first (unlike ``to_rgb_array`` for training/metrics): re-attaching
      alpha to pre-blended colours would blend semi-transparent pixels with white twice.
    * Everything else (RGB, P, CMYK, YCbCr, ...) -> 'RGB'.

    ``scale``, when given, must equal the generator's ``scale`` (a check, not a resize).
    ``kwargs`` go to :func:`upscale` (tile, overlap, device, channels_last).
    """
    gen_scale = getattr(generator, "scale", None)
    if scale is not None and gen_scale is not None and scale != gen_scale:
        raise ValueError(f"scale={scale} but the generator upscales x{gen_scale}")

    img = ImageOps.exif_transpose(image)
    grey = img.mode in GREY_MODES

    if has_alpha(img):
        if img.mode == "La":  # Pillow cannot go La -> RGBA directly
            img = img.convert("LA")
        rgba = np.asarray(img.convert("RGBA"))
        rgb = to_rgb_array(Image.fromarray(np.ascontiguousarray(rgba[..., :3]), "RGB"))
        sr = Image.fromarray(upscale(generator, rgb, **kwargs), "RGB")
        factor = sr.height // rgb.shape[0]
        alpha = Image.fromarray(imresize(np.ascontiguousarray(rgba[..., 3]), factor), "L")
        if grey:
            return Image.merge("LA", (sr.convert("L"), alpha))
        sr.putalpha(alpha)
        return sr

    sr = Image.fromarray(upscale(generator, to_rgb_array(img), **kwargs), "RGB")
    return sr.convert("L") if grey else sr
