"""WGAN-GP critic with the SRGAN discriminator's layout (Ledig et al. 2017, Fig. 4).

Differences from the paper's discriminator, and why:
  * no sigmoid: a Wasserstein critic outputs an unbounded score, not a probability;
  * InstanceNorm2d(affine=True) instead of BatchNorm: the gradient penalty is defined per
    sample (Gulrajani et al. 2017, Sec. 4, "No critic batch normalization"); BatchNorm
    mixes samples of a batch, so one sample's score would depend on the others;
  * an AdaptiveAvgPool2d to a fixed grid before the dense layers, so the critic accepts
    any patch size from `min_input_size` up (96 and 128 give the same parameter count).

Input: images in the generator's HR range [-1, 1] (real HR images are converted with
`srgan_pipeline.models.generator.unit_to_hr`).

BatchNorm policy, in one place: `Critic(norm=...)` accepts only "instance", and
`assert_no_batchnorm(module)` refuses any module tree that contains a BatchNorm layer.
The Critic calls it on itself at construction; training code calls it again on whatever
critic it is about to train (e.g. one loaded or swapped in), which is cheap.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from srgan_pipeline.architecture import CRITIC_DOWNSAMPLES, CRITIC_POOL_SIZE, critic_min_input


def assert_no_batchnorm(module: nn.Module) -> None:
    """Raise ValueError if `module` contains any BatchNorm layer (incl. SyncBatchNorm).

    A WGAN-GP critic must score each sample independently, because the gradient penalty
    is a per-sample constraint on the gradient norm; BatchNorm couples the samples.
    """
    offenders = [name for name, m in module.named_modules() if isinstance(m, _BatchNorm)]
    if offenders:
        raise ValueError(
            "The WGAN-GP critic must not use BatchNorm (the gradient penalty is per sample, "
            "BatchNorm mixes the samples of a batch); use InstanceNorm2d(affine=True). "
            f"BatchNorm layers found: {offenders}"
        )


def _conv(in_ch: int, out_ch: int, stride: int, norm: bool) -> list[nn.Module]:
    """conv3x3 [+ InstanceNorm] + LeakyReLU(0.2). No conv bias when normalised: the
    InstanceNorm subtracts the per-channel mean, which would cancel any bias."""
    layers: list[nn.Module] = [nn.Conv2d(in_ch, out_ch, 3, stride, padding=1, bias=not norm)]
    if norm:
        layers.append(nn.InstanceNorm2d(out_ch, affine=True))
    layers.append(nn.LeakyReLU(0.2))
    return layers


class Critic(nn.Module):
    """Images (N, 3, H, W) in [-1, 1] -> one unbounded score per sample, shape (N,).

    Layout for base_channels=b (paper: b=64):
      conv(3 -> b, s1) [no norm], conv(b -> b, s2)
      conv(b -> 2b, s1),  conv(2b -> 2b, s2)
      conv(2b -> 4b, s1), conv(4b -> 4b, s2)
      conv(4b -> 8b, s1), conv(8b -> 8b, s2)
      AdaptiveAvgPool2d(pool_size) -> Linear(8b * pool_size^2 -> hidden) -> LeakyReLU(0.2)
      -> Linear(hidden -> 1)
    Every conv but the first is followed by InstanceNorm2d(affine=True); all by LeakyReLU.

    The four stride-2 convs shrink a side of length H to ceil(H / 16). `min_input_size` is
    the smallest side for which that final map still has at least pool_size cells, so the
    pool only averages and never replicates cells: 16 * (pool_size - 1) + 1, i.e. 81 for
    the default pool_size=6 (a 96 patch gives exactly 6x6).

    Args:
        in_channels: image channels (3).
        base_channels: width of the first conv, b (paper: 64); widths are b, 2b, 4b, 8b.
        pool_size: side of the pooled grid fed to the dense layers (default 6).
        hidden: width of the first dense layer (paper: 1024).
        norm: only "instance" is accepted; anything else (e.g. "batch") raises ValueError.
    """

    def __init__(
        self,
        in_channels: int = 3,
        base_channels: int = 64,
        pool_size: int = CRITIC_POOL_SIZE,
        hidden: int = 1024,
        norm: str = "instance",
    ):
        super().__init__()
        if norm != "instance":
            raise ValueError(
                f"Critic norm must be 'instance' (InstanceNorm2d, affine=True); got {norm!r}. "
                "BatchNorm is not allowed in a WGAN-GP critic: the gradient penalty is per "
                "sample and BatchNorm mixes the samples of a batch."
            )
        # The constructor's arguments: checkpoints record them, so a resume can tell a critic
        # of another architecture by name instead of by a tensor size mismatch.
        self.config = {"in_channels": in_channels, "base_channels": base_channels,
                       "pool_size": pool_size, "hidden": hidden, "norm": norm}
        self.in_channels = in_channels
        self.min_input_size = critic_min_input(pool_size)

        b = base_channels
        widths = [b * 2**i for i in range(CRITIC_DOWNSAMPLES)]  # b, 2b, 4b, 8b
        layers = _conv(in_channels, b, stride=1, norm=False)  # first conv: no norm
        layers += _conv(b, b, stride=2, norm=True)
        for w_in, w_out in zip(widths[:-1], widths[1:], strict=True):
            layers += _conv(w_in, w_out, stride=1, norm=True)
            layers += _conv(w_out, w_out, stride=2, norm=True)
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(pool_size)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(widths[-1] * pool_size * pool_size, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, 1),  # no sigmoid: a Wasserstein score is unbounded
        )
        assert_no_batchnorm(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            x.dim() != 4
            or x.shape[1] != self.in_channels
            or min(x.shape[-2:]) < self.min_input_size
        ):
            raise ValueError(
                f"Critic expects images shaped (N, {self.in_channels}, H, W) with "
                f"H, W >= {self.min_input_size} (values in [-1, 1]); got shape "
                f"{tuple(x.shape)}"
            )
        return self.head(self.pool(self.features(x))).squeeze(1)
