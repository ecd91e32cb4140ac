"""VGG19 perceptual ("content") loss of SRGAN.

Ledig et al. 2017 define the VGG loss in Sec. 2.2.2 (Eq. 5) as the Euclidean distance
between VGG19 feature maps of the reconstruction and of the reference; "VGG54" (the
paper's choice) is the feature map after the 4th conv (and its ReLU) before the 5th
max-pool, i.e. `relu5_4`. Sec. 3.2 of the paper rescales the feature maps by 1/12.75 so
the VGG loss has a scale comparable to the MSE loss, which is the same as multiplying the
loss by 1/12.75^2 ~= 0.006. We divide both feature maps by `FEATURE_SCALE` = 12.75 and
take the mean squared error over all elements (N, C, H, W).

Inputs are images in [0, 1] (convert generator output with
`srgan_pipeline.models.generator.hr_to_unit`); the module applies the ImageNet mean/std
normalisation the VGG weights were trained with.

Weights (`weights=`):
  * "imagenet": torchvision's VGG19_Weights.IMAGENET1K_V1, read from the torch hub cache
    ($TORCH_HOME/hub/checkpoints/vgg19-dcbb9e9d.pth) or downloaded; when neither works a
    RuntimeError says which file to put where.
  * a path to a torchvision vgg19 state dict (full model, keys "features.N.*", or the
    features part only, keys "N.*"), loaded with torch.load(weights_only=True).
  * "random": explicit opt-in for offline smoke runs; deterministic (seeded) random init.
    This is NOT the published VGG loss, and a WARNING says so.
`self.weights_source` records which one was used ("imagenet", "file:<abs path>",
"random") so training can log it (e.g. to MLflow).
"""

from __future__ import annotations

import copy
import logging
import os
from http.client import HTTPException
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from torch import nn

from srgan_pipeline.names import VGG19_LAYERS

logger = logging.getLogger(__name__)

# Paper Sec. 3.2: feature maps rescaled by 1/12.75 (loss x 1/12.75^2 ~= 0.006).
FEATURE_SCALE = 12.75

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _vgg19_features(weights: str) -> nn.Sequential:
    """torchvision's ``vgg19().features``: random init, or ImageNet weights from the hub cache.

    torchvision reads ``<torch hub dir>/checkpoints/vgg19-dcbb9e9d.pth`` or downloads and
    hash-checks it; a failed download (no network, proxy, DNS, timeout) becomes a
    RuntimeError telling the user which file to place where, or which alternatives to use.
    """
    from torchvision.models import VGG19_Weights, vgg19

    if weights != "imagenet":
        with torch.random.fork_rng():  # torchvision's init must not move the global RNG
            return vgg19(weights=None).features
    url = VGG19_Weights.IMAGENET1K_V1.url
    filename = os.path.basename(urlparse(url).path)  # vgg19-dcbb9e9d.pth
    cache_dir = os.path.join(torch.hub.get_dir(), "checkpoints")
    try:
        return vgg19(weights=VGG19_Weights.IMAGENET1K_V1).features
    except (OSError, HTTPException) as err:  # URLError, timeouts, SSL errors are OSError
        raise RuntimeError(
            f"Could not get the ImageNet VGG19 weights for the perceptual loss: "
            f"'{filename}' is not in the torch hub cache and downloading it from {url} "
            f"failed ({err!r}). Either place the file {filename} at "
            f"{os.path.join(cache_dir, filename)} (cache directory from torch.hub.get_dir(); "
            f"set TORCH_HOME to move it), or pass weights='<path to a vgg19 state dict .pth>', "
            f"or pass weights='random' for offline smoke runs (NOT the published VGG loss)."
        ) from err


def _features_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The ``features`` part of a vgg19 state dict, keyed "N.*" (a full model's or its own)."""
    if any(k.startswith("features.") for k in state):
        return {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    return state


class VGGPerceptualLoss(nn.Module):
    """MSE between rescaled VGG19 feature maps of two [0, 1] image batches.

    Frozen (no parameter requires grad) and always in eval mode: `train()` is overridden
    so that a parent's `.train()` cannot switch it. Gradients still flow to the inputs.

    Args:
        layer: feature layer name, relu1_1 .. relu5_4 (default relu5_4 = paper's VGG54).
        weights: "imagenet", a path to a vgg19 state dict, or "random" (see module doc).
        seed: seed of the "random" init, so offline runs are repeatable (ignored otherwise).
    """

    def __init__(
        self,
        layer: str = "relu5_4",
        weights: str | os.PathLike = "imagenet",
        seed: int = 0,
    ):
        super().__init__()
        if layer not in VGG19_LAYERS:
            raise ValueError(
                f"Unknown VGG19 layer {layer!r}; valid names: {', '.join(VGG19_LAYERS)}"
            )
        self.layer = layer
        features = _vgg19_features("imagenet" if weights == "imagenet" else "random")

        if weights == "random":
            self._random_init(features, seed)
            self.weights_source = "random"
            logger.warning(
                "VGGPerceptualLoss uses RANDOM VGG19 weights (seed=%d): the perceptual loss "
                "is NOT the published VGG loss. Use it only for offline smoke runs.",
                seed,
            )
        elif weights == "imagenet":
            self.weights_source = "imagenet"
        else:
            path = os.fspath(weights)
            looks_like_path = path.endswith((".pth", ".pt")) or os.path.exists(path)
            if not looks_like_path:
                raise ValueError(
                    f"weights must be 'imagenet', 'random' or a path to a vgg19 state dict "
                    f"(.pth/.pt); got {path!r}"
                )
            if not os.path.isfile(path):
                raise FileNotFoundError(f"VGG19 weights file not found: {path}")
            state = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(state, dict):
                raise ValueError(f"{path} does not hold a state dict (got {type(state)})")
            try:
                features.load_state_dict(_features_state(state))
            except RuntimeError as err:
                raise RuntimeError(f"{path} is not a torchvision vgg19 state dict: {err}") from err
            self.weights_source = f"file:{os.path.abspath(path)}"

        # Only the layers up to the chosen one: deeper ones would cost compute for nothing.
        self.features = features[: VGG19_LAYERS[layer] + 1]
        self.features.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), False)
        self.train(False)

    @staticmethod
    @torch.no_grad()
    def _random_init(features: nn.Sequential, seed: int) -> None:
        """torchvision's VGG conv init (Kaiming-normal fan_out, zero bias), from a private
        generator so it is repeatable and leaves the global RNG untouched."""
        gen = torch.Generator().manual_seed(seed)
        for m in features:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(
                    m.weight, mode="fan_out", nonlinearity="relu", generator=gen
                )
                nn.init.zeros_(m.bias)

    def train(self, mode: bool = True) -> VGGPerceptualLoss:
        """Ignore `mode`: the loss network is fixed and stays in eval mode."""
        return super().train(False)

    def in_dtype(self, dtype: torch.dtype) -> VGGPerceptualLoss:
        """This loss with its convolutions stored in ``dtype``: itself if they already are, else
        a copy (``self`` keeps its float32 weights, which a round trip through bf16 would lose).

        For training under bf16 autocast: autocast casts only weights that require grad once per
        forward, and these are frozen, so it would cast all of them again at every call. Stored
        in bf16 they give the same losses bit for bit (the same rounding, done once). The copy
        runs only under autocast (its inputs are normalised in float32).
        """
        if self.features[0].weight.dtype == dtype:
            return self
        twin = copy.deepcopy(self)
        twin.features.to(dtype)
        return twin

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """Rescaled VGG features (divided by FEATURE_SCALE) of images in [0, 1]."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(
                f"VGGPerceptualLoss expects RGB images shaped (N, 3, H, W) in [0, 1]; "
                f"got shape {tuple(x.shape)}"
            )
        return self.features((x - self.mean) / self.std) / FEATURE_SCALE

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        """Perceptual loss between a reconstruction `sr` and a reference `hr`, both in
        [0, 1] and of the same shape. The MSE is taken in float32 (also under autocast)."""
        if sr.shape != hr.shape:
            raise ValueError(
                f"sr and hr must have the same shape; got {tuple(sr.shape)} and {tuple(hr.shape)}"
            )
        return F.mse_loss(self.feature_map(sr).float(), self.feature_map(hr).float())
