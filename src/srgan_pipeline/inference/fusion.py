"""The inference copy of a generator: eval mode, BatchNorm folded, tail conv before the shuffle.

Each rewrite computes the same function (to float rounding) with fewer or cheaper ops; the
caller's module is never modified. An :class:`~.upscaler.Upscaler` runs such a copy.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from srgan_pipeline.devices import DTYPES
from srgan_pipeline.models.generator import Generator, ResidualBlock, UpsampleBlock

__all__ = ["inference_model"]


def inference_model(
    generator: nn.Module,
    *,
    device: torch.device | str | None = None,
    channels_last: bool = True,
    precision: str = "fp32",
) -> nn.Module:
    """A copy of ``generator`` rewritten for fast eval-mode inference; the original is untouched.

    :meth:`.upscaler.InferencePlan.prepare` makes it once per generator, and the
    :class:`~.upscaler.Upscaler` it returns runs it on every image. Same function (to float
    rounding, <= 1 grey level after quantising), fewer and cheaper ops:

    * eval mode, no gradients, moved to ``device``, NHWC weights when ``channels_last``,
      bf16 weights when ``precision`` is "bf16" (``devices.resolve_precision`` picks it
      where the hardware has bf16 units; the input tile is cast to the weights' dtype);
    * every BatchNorm2d that directly follows a Conv2d (in a Sequential, or conv1/bn1 and
      conv2/bn2 of a ResidualBlock) is folded into that conv: in eval mode it is a fixed
      per-channel affine map (33 BatchNorm passes over the feature maps saved at 16 blocks);
    * for a :class:`Generator`, the tail conv (9x9, C -> 3, at full HR resolution: on CPU its
      3 output channels keep it far below the speed of the body convs) is re-expressed before
      the last PixelShuffle(r): a 5x5 conv, C*r^2 -> 3*r^2 channels, at 1/r of the resolution,
      followed by PixelShuffle(r), with the last PReLU's slopes repeated r^2 times so that it
      can run before the shuffle. Exact algebra (see :func:`_tail_before_shuffle`), faster
      for that layer, and it also skips shuffling the C-channel map to full resolution.

    What the folding and the tail rewrite gain together: benchmarks/upscale.py, "plain"
    against "project nchw".
    """
    # Hundreds of small tensor ops (clones, folds, layout changes), each just above torch's
    # parallel grain size: with several threads every op pays an OpenMP wake-up, which adds
    # up to far more than the work itself when other processes keep the cores busy.
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
        # grey level near white, far below an SR model's error (bf16 vs fp32:
        # benchmarks/results/, the upscale and serving note).
        model.to(dtype=DTYPES[precision])
    finally:
        torch.set_num_threads(threads)
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
