"""LPIPS (Zhang et al. 2018), the perceptual distance of published SRGAN/ESRGAN tables.

Lower is better: 0 for identical images. Computed by the authors' ``lpips`` package (v0.1, the
published version; AlexNet, its default, or VGG16): its wheel ships the small linear heads
(``lpips/weights/v0.1/<net>.pth``); the ImageNet backbone is torchvision's, read from the torch
hub cache (``<torch hub dir>/checkpoints/alexnet-owt-7be5be79.pth``, ``vgg16-397923af.pth``)
or downloaded there. Why this package and not torchmetrics, piq or pyiqa: docs/evaluation.md.

Backbones (``weights=``), as models/perceptual.py treats VGG19:
  * ``imagenet``: the real one; when it is neither cached nor downloadable, a RuntimeError
    names the URL and the exact path to place the file at, before anything is scored.
  * ``random``: explicit opt-in for offline smoke runs; a seeded random backbone. The number
    is NOT LPIPS, a WARNING says so, and ``weights_source`` records it for the tables and MLflow.
"""

from __future__ import annotations

import logging
import os
import warnings
from http.client import HTTPException
from urllib.parse import urlparse

import numpy as np
import torch

from srgan_pipeline.names import LPIPS_NETS

logger = logging.getLogger(__name__)

__all__ = ["LPIPSMetric", "backbone_path", "fetch_backbone"]


def _backbone_weights(net: str):
    from torchvision.models import AlexNet_Weights, VGG16_Weights

    return {"alex": AlexNet_Weights, "vgg": VGG16_Weights}[net].IMAGENET1K_V1


def backbone_path(net: str) -> str:
    """Where torchvision reads (and downloads) the ImageNet backbone of ``net``."""
    filename = os.path.basename(urlparse(_backbone_weights(net).url).path)
    return os.path.join(torch.hub.get_dir(), "checkpoints", filename)


def fetch_backbone(net: str) -> str:
    """The ImageNet backbone's file, downloaded now when absent (and hash-checked, as
    torchvision does); offline, a RuntimeError names the URL and the path. The hooks call it
    before a run that evaluates starts, so a missing file stops it before data_prep, not after
    training."""
    path = backbone_path(net)
    if not os.path.isfile(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        url = _backbone_weights(net).url
        try:  # torchvision's file names end in the first digits of their sha256
            torch.hub.download_url_to_file(url, path, hash_prefix=url.rsplit("-", 1)[1][:8],
                                           progress=False)
        except (OSError, HTTPException) as err:
            raise RuntimeError(_unavailable(net, err)) from err
    return path


def _unavailable(net: str, err: Exception) -> str:
    url, path = _backbone_weights(net).url, backbone_path(net)
    return (f"Could not get the ImageNet {net} backbone of LPIPS: {path} is absent and "
            f"downloading {url} failed ({err!r}). Place the file {url} at {path} "
            f"(torch.hub.get_dir(); TORCH_HOME moves it), or set "
            f"evaluation.lpips.weights=random for offline smoke runs (NOT LPIPS), or "
            f"evaluation.lpips=null to score without it")


class LPIPSMetric:
    """LPIPS of uint8 RGB image pairs, one image at a time (any size: the network is fully
    convolutional and LPIPS averages over space).

    Args:
        net: ``alex`` (the published default) or ``vgg``.
        weights: ``imagenet`` or ``random`` (see the module doc).
        seed: the seed of the random backbone (ignored for ``imagenet``).
    """

    def __init__(self, net: str = "alex", weights: str = "imagenet", seed: int = 0):
        if net not in LPIPS_NETS:
            raise ValueError(f"LPIPS net must be one of {list(LPIPS_NETS)}, got {net!r}")
        if weights not in ("imagenet", "random"):
            raise ValueError(f"LPIPS weights must be 'imagenet' or 'random', got {weights!r}")
        self.net, self.weights_source = net, weights
        self.model = self._build(net, weights, seed).eval().requires_grad_(False)

    @staticmethod
    def _build(net: str, weights: str, seed: int) -> torch.nn.Module:
        import lpips

        with warnings.catch_warnings(), torch.random.fork_rng():
            # lpips 0.1.4 asks torchvision for `pretrained=`, deprecated since 0.13 (same weights)
            warnings.filterwarnings("ignore", "Arguments other than a weight enum",
                                    UserWarning)
            warnings.filterwarnings("ignore", "The parameter 'pretrained'", UserWarning)
            torch.manual_seed(seed)  # the random backbone is repeatable; the global RNG kept
            if weights == "random":
                logger.warning("LPIPS uses a RANDOM %s backbone (seed=%d): the scores are NOT "
                               "LPIPS. Use it only for offline smoke runs.", net, seed)
                return lpips.LPIPS(net=net, pnet_rand=True, verbose=False)
            try:
                return lpips.LPIPS(net=net, verbose=False)
            except (OSError, HTTPException) as err:  # URLError, timeouts, SSL errors
                raise RuntimeError(_unavailable(net, err)) from err

    @torch.inference_mode()
    def __call__(self, sr: np.ndarray, hr: np.ndarray, dtype: torch.dtype = torch.float32
                 ) -> float:
        """LPIPS between two uint8 HxWx3 images (``dtype``: bfloat16 runs under autocast)."""
        if sr.shape != hr.shape or sr.ndim != 3 or sr.shape[2] != 3:
            raise ValueError(f"LPIPS needs two HxWx3 images of one shape, got {sr.shape} and "
                             f"{hr.shape}")
        pair = [torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None].float() / 255
                for x in (sr, hr)]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            distance = self.model(*pair, normalize=True)  # normalize: [0, 1] -> [-1, 1]
        return float(distance.float().mean())
