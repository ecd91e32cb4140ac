"""PSNR / SSIM exactly as published super-resolution tables compute them.

The protocol (SRCNN, VDSR, EDSR, RCAN, SRGAN tables; BasicSR's ``test_y_channel=True``):

* both images are 8-bit: an SR output is quantised like a saved PNG (:func:`quantize`) before
  it is scored, so the figure is that of the image a user would get;
* the score is on the Y channel of BT.601 YCbCr (MATLAB ``rgb2ycbcr``, :func:`imaging.rgb_to_y`),
  in float64, not rounded;
* ``crop`` pixels (the scale factor, by convention) are removed from every border, where the
  bicubic LR had to invent pixels;
* PSNR with a peak of 255; SSIM with Wang et al.'s reference settings (11x11 Gaussian window,
  sigma 1.5, population covariance, K1 = 0.01, K2 = 0.03) via scikit-image.

:func:`psnr_rgb` is the all-channel PSNR some tables (BasicSR's default) report instead.
:func:`bicubic_upscale` is the bicubic baseline row of those tables.
"""

from __future__ import annotations

import math

import numpy as np

from srgan_pipeline.imaging import imresize, rgb_to_y

__all__ = ["bicubic_upscale", "psnr_rgb", "psnr_y", "quantize", "score", "ssim_y"]

PEAK = 255.0


def structural_similarity(*args, **kwargs) -> float:
    """scikit-image's SSIM, imported at first use: upscaling needs only :func:`quantize` of this
    module, and importing skimage.metrics takes about a second (srgan-pipeline upscale's
    start-up)."""
    from skimage.metrics import structural_similarity as ssim

    return ssim(*args, **kwargs)


# Wang et al. (2004) reference SSIM, as MATLAB's ssim.m / the authors' ssim_index.m. Without
# these, skimage uses a 7x7 uniform window and the sample covariance, which reads ~0.01-0.03
# higher on SR images and is not comparable with any table.
SSIM_ARGS = {
    "gaussian_weights": True,
    "sigma": 1.5,
    "use_sample_covariance": False,
    "data_range": PEAK,
}


def quantize(image) -> np.ndarray:
    """SR output in [0, 1] (float array or CPU tensor, any shape) -> uint8, as a saved image.

    ``floor(x * 255 + 0.5)`` after clipping to [0, 255], i.e. round half up, as torchvision's
    ``save_image`` does. Non-finite values raise ValueError: they mean a broken model, and
    casting NaN to uint8 would silently produce arbitrary pixels.
    """
    array = np.asarray(image, dtype=np.float64)
    if not np.isfinite(array).all():
        raise ValueError("cannot quantize an image with NaN or infinite values")
    return np.floor(np.clip(array * PEAK, 0.0, PEAK) + 0.5).astype(np.uint8)


def _checked_pair(sr: np.ndarray, hr: np.ndarray, crop: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate two uint8 HxWx3 images of the same shape and crop ``crop`` px off each border."""
    sr, hr = np.asarray(sr), np.asarray(hr)
    if sr.shape != hr.shape:
        raise ValueError(f"image shapes differ: sr {sr.shape} vs hr {hr.shape}")
    for name, array in (("sr", sr), ("hr", hr)):
        if array.dtype != np.uint8:
            # Scores are defined on 8-bit images; a float image in [0, 1] would score as black.
            raise TypeError(f"{name} must be uint8 (quantize SR outputs first), got {array.dtype}")
    if sr.ndim != 3 or sr.shape[2] != 3:
        raise ValueError(f"expected HxWx3 RGB images, got shape {sr.shape}")
    if crop < 0:
        raise ValueError(f"crop must be >= 0, got {crop}")
    height, width = sr.shape[:2]
    if height <= 2 * crop or width <= 2 * crop:
        raise ValueError(f"crop={crop} leaves nothing of a {height}x{width} image")
    if crop:
        sr, hr = sr[crop:-crop, crop:-crop], hr[crop:-crop, crop:-crop]
    return sr, hr


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(PEAK * PEAK / mse)


def psnr_y(sr: np.ndarray, hr: np.ndarray, crop: int = 4) -> float:
    """PSNR (dB) on the BT.601 Y channel after cropping ``crop`` px per border; inf if equal."""
    sr, hr = _checked_pair(sr, hr, crop)
    return _psnr(rgb_to_y(sr), rgb_to_y(hr))


def ssim_y(sr: np.ndarray, hr: np.ndarray, crop: int = 4) -> float:
    """SSIM on the BT.601 Y channel after cropping, with Wang et al.'s reference settings."""
    sr, hr = _checked_pair(sr, hr, crop)
    return float(structural_similarity(rgb_to_y(sr), rgb_to_y(hr), **SSIM_ARGS))


def psnr_rgb(sr: np.ndarray, hr: np.ndarray, crop: int = 4) -> float:
    """PSNR (dB) over all three RGB channels after cropping (BasicSR's default table)."""
    sr, hr = _checked_pair(sr, hr, crop)
    return _psnr(sr, hr)


def score(sr: np.ndarray, hr: np.ndarray, crop: int = 4) -> dict[str, float]:
    """All table figures for one image pair: ``{"psnr_y", "ssim_y", "psnr_rgb"}``.

    Validates and converts to Y once. PSNR values may be ``math.inf`` (identical images):
    average per-image figures with that in mind (JSON cannot store inf).
    """
    sr_c, hr_c = _checked_pair(sr, hr, crop)
    sr_y, hr_y = rgb_to_y(sr_c), rgb_to_y(hr_c)
    return {
        "psnr_y": _psnr(sr_y, hr_y),
        "ssim_y": float(structural_similarity(sr_y, hr_y, **SSIM_ARGS)),
        "psnr_rgb": _psnr(sr_c, hr_c),
    }


def bicubic_upscale(lr: np.ndarray, scale: int) -> np.ndarray:
    """The bicubic baseline: MATLAB ``imresize(lr, scale, 'bicubic')`` (a = -0.5), uint8."""
    lr = np.asarray(lr)
    if lr.dtype != np.uint8:
        raise TypeError(f"expected a uint8 image, got {lr.dtype}")
    return imresize(lr, scale)
