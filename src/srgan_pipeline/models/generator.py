"""SRResNet generator (Ledig et al. 2017, "Photo-Realistic Single Image Super-Resolution
Using a Generative Adversarial Network", Fig. 4), plus the one place where image ranges
are converted.

Value ranges (as in the paper, Sec. 3.2):
  * the generator takes low-resolution (LR) images in [0, 1];
  * it returns high-resolution (HR) images in [-1, 1] (tanh output);
  * HR targets, the critic and the HR side of the pipeline work in [-1, 1];
  * the VGG perceptual loss and metrics/visualisation work in [0, 1].

The conversion between [-1, 1] and [0, 1] happens in exactly one place: `hr_to_unit` and
`unit_to_hr` below. All other code imports these two helpers instead of writing
`(x + 1) / 2` by hand, so the convention cannot drift between modules.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from srgan_pipeline.architecture import SCALES


def hr_to_unit(x: torch.Tensor) -> torch.Tensor:
    """Map an HR image from the generator's range [-1, 1] to [0, 1].

    The single [-1, 1] -> [0, 1] conversion of the project: use it (never an inline
    formula) before the perceptual loss, metrics or saving images. No clamping: the
    generator's tanh already keeps values inside [-1, 1], and clamping would zero the
    gradient at the boundary.
    """
    return (x + 1) / 2


def unit_to_hr(x: torch.Tensor) -> torch.Tensor:
    """Map an image from [0, 1] to the generator's HR range [-1, 1].

    The single [0, 1] -> [-1, 1] conversion of the project: use it to bring real HR
    images into the range the generator produces before comparing them or feeding them
    to the critic. Inverse of `hr_to_unit`.
    """
    return x * 2 - 1


class ResidualBlock(nn.Module):
    """conv3x3-BN-PReLU-conv3x3-BN with an identity skip (the paper's B residual blocks).

    The convs carry no bias: the BatchNorm right after each one has its own shift (beta),
    so a conv bias would be a redundant parameter.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.act = nn.PReLU(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """The branch added to the skip; separate so its scale can be inspected."""
        return self.bn2(self.conv2(self.act(self.bn1(self.conv1(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.residual(x)


class UpsampleBlock(nn.Module):
    """conv3x3 (C -> 4C) + PixelShuffle(2) + PReLU: doubles height and width.

    Sub-pixel convolution (Shi et al. 2016) as in the paper; the conv works at low
    resolution and PixelShuffle rearranges its 4C channels into a 2x larger C-channel map.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels * 4, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)
        self.act = nn.PReLU(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.shuffle(self.conv(x)))


class Generator(nn.Module):
    """SRResNet: LR image in [0, 1] (N, 3, H, W) -> SR image in [-1, 1] (N, 3, sH, sW).

    Layout (paper Fig. 4):
      head:     conv9x9 (3 -> C) + PReLU
      body:     `num_blocks` ResidualBlocks, then conv3x3 + BN, plus a global skip from
                the head output
      upsample: log2(scale) UpsampleBlocks (scale 4 -> two, scale 2 -> one)
      tail:     conv9x9 (C -> 3) + tanh

    PReLU is channel-wise (one slope per channel, as in He et al. 2015).

    Args:
        scale: upscaling factor, 2 or 4 (each factor of 2 is one sub-pixel stage).
        channels: feature width C (paper: 64).
        num_blocks: number of residual blocks B (paper: 16).
        input_skip: off by default (the paper's network). On: the output is a bicubic
            upsampling of the input plus what the network adds, without the final tanh
            (an explicit option for short CPU runs, measured in
            benchmarks/results/, the convergence notes).
        residual_init_scale: None keeps PyTorch's default init. A float (BasicSR uses 0.1)
            re-initialises the residual-block convs Kaiming-normal times this factor, as
            BasicSR does, so each block starts close to the identity. Because every such
            conv here is followed by BatchNorm, which divides the scale of its input back
            out, shrinking the conv weights alone would not shrink the block's output;
            the second BatchNorm's weight (gamma) is therefore also set to this factor,
            which is what actually scales the residual branch at initialisation.
    """

    def __init__(
        self,
        scale: int = 4,
        channels: int = 64,
        num_blocks: int = 16,
        residual_init_scale: float | None = None,
        input_skip: bool = False,
    ):
        super().__init__()
        # The model keeps its constructor arguments (as nanoGPT's GPT(config) does): checkpoints
        # store them, so a checkpoint rebuilds exactly this architecture.
        self.config = {"scale": scale, "channels": channels, "num_blocks": num_blocks,
                       "residual_init_scale": residual_init_scale, "input_skip": input_skip}
        if scale not in SCALES:
            raise ValueError(
                f"Generator supports scale {' or '.join(map(str, SCALES))} (one or two x2 "
                "PixelShuffle stages); "
                f"got scale={scale!r}"
            )
        self.scale = scale
        self.head = nn.Sequential(nn.Conv2d(3, channels, 9, padding=4), nn.PReLU(channels))
        self.blocks = nn.Sequential(*[ResidualBlock(channels) for _ in range(num_blocks)])
        self.body_tail = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels)
        )
        self.upsample = nn.Sequential(
            *[UpsampleBlock(channels) for _ in range(int(math.log2(scale)))]
        )
        self.tail = nn.Conv2d(channels, 3, 9, padding=4)
        self.input_skip = input_skip

        if residual_init_scale is not None:
            self._init_residual_blocks(residual_init_scale)

    @torch.no_grad()
    def _init_residual_blocks(self, factor: float) -> None:
        """BasicSR-style small init of the residual blocks (see the class docstring)."""
        for block in self.blocks:
            for conv in (block.conv1, block.conv2):
                nn.init.kaiming_normal_(conv.weight)  # fan_in, gain sqrt(2), as BasicSR
                conv.weight.mul_(factor)
            block.bn2.weight.fill_(factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(
                "Generator expects a batch of RGB low-resolution images shaped "
                f"(N, 3, H, W) with values in [0, 1]; got shape {tuple(x.shape)}"
            )
        return self.reconstruct(x, self.features(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The LR-resolution part: head, residual blocks and the global skip (N, C, H, W).

        Split from :meth:`reconstruct` so tiled inference can run each part on tiles of its
        own size (inference/tiling.py): this part holds nearly all of the receptive radius at
        a quarter of the HR part's memory per LR pixel.
        """
        feat = self.head(x)
        return feat + self.body_tail(self.blocks(feat))  # global skip from the head

    def reconstruct(self, x: torch.Tensor, feat: torch.Tensor) -> torch.Tensor:
        """The HR part: ``features(x)`` upsampled to the SR image (``x`` for the input skip)."""
        if self.input_skip:
            # The network learns only the residual over a bicubic upsampling of its input, as
            # BasicSR's MSRResNet does with bilinear. No tanh: it would squash the bicubic
            # image itself; outputs are clipped when quantised to 8 bits.
            upsampled = F.interpolate(x, scale_factor=self.scale, mode="bicubic",
                                      align_corners=False)
            return unit_to_hr(upsampled) + self.tail(self.upsample(feat))
        return torch.tanh(self.tail(self.upsample(feat)))

    def stage_modules(self) -> tuple[nn.Module, nn.Module]:
        """The modules of :meth:`features` and of :meth:`reconstruct`, each in forward order
        (tiling.stage_radii measures each stage's reach from them)."""
        return (nn.Sequential(self.head, self.blocks, self.body_tail),
                nn.Sequential(self.upsample, self.tail))
