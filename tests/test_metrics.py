"""Tests for srgan_pipeline.metrics: Y-channel PSNR/SSIM as published SR tables compute them."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from srgan_pipeline.imaging import imresize, load_rgb, mod_crop
from srgan_pipeline.metrics import (
    bicubic_upscale,
    psnr_rgb,
    psnr_y,
    quantize,
    score,
    ssim_y,
)

URBAN100 = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "Urban100"

# BT.601 studio-range luma weights (MATLAB rgb2ycbcr), written out here independently.
Y_WEIGHTS = np.array([65.481, 128.553, 24.966]) / 255.0


def _image(shape=(40, 48, 3), low=0, high=256, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(low, high, shape, dtype=np.uint8)


def _y(rgb: np.ndarray) -> np.ndarray:
    return 16.0 + rgb.astype(np.float64) @ Y_WEIGHTS


# --------------------------------------------------------------------------------------------
# quantize
# --------------------------------------------------------------------------------------------


def test_quantize_rounds_half_up_and_clips():
    values = np.array([-0.2, 0.0, 0.49 / 255, 0.5 / 255, 1.5 / 255, 254.5 / 255, 1.0, 1.3])
    assert quantize(values).tolist() == [0, 0, 0, 1, 2, 255, 255, 255]
    assert quantize(values).dtype == np.uint8


def test_quantize_round_trips_uint8_and_rejects_nan():
    image = _image()
    assert np.array_equal(quantize(image / 255.0), image)
    with pytest.raises(ValueError, match="NaN"):
        quantize(np.array([0.5, np.nan]))


# --------------------------------------------------------------------------------------------
# PSNR
# --------------------------------------------------------------------------------------------


def test_identical_images_give_inf_psnr_and_ssim_one():
    image = _image()
    assert psnr_y(image, image) == math.inf
    assert psnr_rgb(image, image) == math.inf
    assert ssim_y(image, image) == pytest.approx(1.0)
    assert score(image, image) == {"psnr_y": math.inf, "ssim_y": pytest.approx(1.0),
                                   "psnr_rgb": math.inf}  # fmt: skip


@pytest.mark.parametrize("d", [1, 3, 10])
def test_constant_offset_gives_the_closed_form_psnr(d):
    hr = _image(low=20, high=200)
    sr = hr + np.uint8(d)  # +d on R, G and B: Cb, Cr unchanged, Y up by d * 219/255
    y_step = d * Y_WEIGHTS.sum()
    assert y_step == pytest.approx(d * 219 / 255)
    assert psnr_y(sr, hr) == pytest.approx(20 * math.log10(255 / y_step), abs=1e-9)
    assert psnr_rgb(sr, hr) == pytest.approx(20 * math.log10(255 / d), abs=1e-9)


def test_random_noise_psnr_matches_the_y_difference():
    hr = _image(low=30, high=220, seed=1)
    noise = np.random.default_rng(2).integers(-12, 13, hr.shape)
    sr = (hr.astype(int) + noise).astype(np.uint8)
    c = 4
    diff = _y(sr)[c:-c, c:-c] - _y(hr)[c:-c, c:-c]
    expected = 10 * math.log10(255**2 / np.mean(diff**2))
    assert psnr_y(sr, hr, crop=c) == pytest.approx(expected, abs=1e-9)
    rgb_diff = (sr.astype(float) - hr)[c:-c, c:-c]
    assert psnr_rgb(sr, hr, crop=c) == pytest.approx(10 * math.log10(255**2 / np.mean(rgb_diff**2)))


def test_y_of_black_and_white_is_16_and_235():
    black = np.zeros((20, 20, 3), np.uint8)
    white = np.full((20, 20, 3), 255, np.uint8)
    # Y(black) = 16, Y(white) = 235: the whole image differs by exactly 219 in Y.
    assert psnr_y(black, white) == pytest.approx(20 * math.log10(255 / 219), abs=1e-12)
    assert psnr_rgb(black, white) == pytest.approx(0.0, abs=1e-12)


def test_border_crop_excludes_the_borders():
    hr = _image(seed=3)
    sr = hr.copy()
    rng = np.random.default_rng(4)
    ring = np.ones(hr.shape[:2], bool)
    ring[4:-4, 4:-4] = False  # differences only within 4 px of the border
    sr[ring] = rng.integers(0, 256, (ring.sum(), 3), dtype=np.uint8)
    assert psnr_y(sr, hr, crop=4) == math.inf
    assert psnr_rgb(sr, hr, crop=4) == math.inf
    assert ssim_y(sr, hr, crop=4) == pytest.approx(1.0)
    assert psnr_y(sr, hr, crop=3) < 40  # the innermost ring of differences is counted
    assert psnr_y(sr, hr, crop=0) < psnr_y(sr, hr, crop=3)


# --------------------------------------------------------------------------------------------
# SSIM
# --------------------------------------------------------------------------------------------


def test_ssim_is_skimage_with_wang_reference_settings():
    # A structured image and its bicubic down-up copy: what SR tables score.
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:64, 0:72]
    waves = np.stack([128 + 90 * np.sin(xx / (3 + c)) * np.cos(yy / 4) for c in range(3)], -1)
    hr = np.clip(waves + rng.normal(0, 10, waves.shape), 0, 255).astype(np.uint8)
    sr = imresize(imresize(hr, 1 / 4), 4)
    y_sr, y_hr = _y(sr)[4:-4, 4:-4], _y(hr)[4:-4, 4:-4]
    reference = structural_similarity(
        y_sr, y_hr, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
        data_range=255,
    )  # fmt: skip
    assert ssim_y(sr, hr) == pytest.approx(reference, abs=1e-12)
    assert score(sr, hr)["ssim_y"] == pytest.approx(reference, abs=1e-12)
    # skimage's defaults (7x7 uniform window, sample covariance) read higher (0.895 vs 0.858).
    default = structural_similarity(y_sr, y_hr, data_range=255)
    assert default - reference > 0.02


def test_score_matches_the_single_metrics():
    hr = _image(seed=7)
    sr = _image(seed=8)
    assert score(sr, hr, crop=2) == {
        "psnr_y": pytest.approx(psnr_y(sr, hr, crop=2)),
        "ssim_y": pytest.approx(ssim_y(sr, hr, crop=2)),
        "psnr_rgb": pytest.approx(psnr_rgb(sr, hr, crop=2)),
    }


# --------------------------------------------------------------------------------------------
# Input checks, bicubic baseline
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", [psnr_y, ssim_y, psnr_rgb, score])
def test_shape_mismatch_names_both_shapes(metric):
    with pytest.raises(ValueError, match=r"\(40, 48, 3\).*\(40, 44, 3\)"):
        metric(_image((40, 48, 3)), _image((40, 44, 3)))


def test_float_images_and_overlarge_crop_are_rejected():
    image = _image()
    with pytest.raises(TypeError, match="uint8"):
        psnr_y(image / 255.0, image)
    with pytest.raises(ValueError, match="crop"):
        psnr_y(image, image, crop=20)


def test_bicubic_upscale_is_matlab_imresize():
    lr = _image((10, 13, 3), seed=9)
    up = bicubic_upscale(lr, 4)
    assert up.shape == (40, 52, 3) and up.dtype == np.uint8
    assert np.array_equal(up, imresize(lr, 4))


# --------------------------------------------------------------------------------------------
# The published bicubic row: Urban100 x4, 23.14 dB / 0.6577
# --------------------------------------------------------------------------------------------


@pytest.mark.shared
@pytest.mark.skipif(
    not (URBAN100 / "HR").is_dir() or not (URBAN100 / "LR_bicubic_X4").is_dir(),
    reason=f"{URBAN100} is absent: the published-figure check needs the benchmark data "
    "beside the project (../shared/datasets/Urban100/{HR,LR_bicubic_X4})",
)
def test_bicubic_x4_reproduces_the_published_urban100_figures():
    # ~30-40 s on 2 CPU cores, SSIM (5 Gaussian filters per image) being most of it. The
    # project's LR (imresize of the mod-cropped HR) is scored separately only where it differs
    # from the MATLAB file: equal inputs give equal scores, so that halves the cost.
    start = time.perf_counter()
    matlab, ours, same = [], [], 0
    for hr_path in sorted((URBAN100 / "HR").glob("*.png")):
        hr = mod_crop(load_rgb(hr_path), 4)
        lr_matlab = load_rgb(URBAN100 / "LR_bicubic_X4" / hr_path.name)
        lr_ours = imresize(hr, 1 / 4)
        figures = score(bicubic_upscale(lr_matlab, 4), hr, crop=4)
        matlab.append(figures)
        if np.array_equal(lr_ours, lr_matlab):
            same += 1
        else:
            figures = score(bicubic_upscale(lr_ours, 4), hr, crop=4)
        ours.append(figures)
    assert len(matlab) == 100

    def means(rows):
        return tuple(float(np.mean([r[k] for r in rows])) for k in ("psnr_y", "ssim_y", "psnr_rgb"))

    for name, (psnr, ssim, rgb) in (("MATLAB LR", means(matlab)), ("project LR", means(ours))):
        print(f"\nUrban100 x4 bicubic from {name}: Y-PSNR {psnr:.4f} dB, SSIM {ssim:.4f}, "
              f"RGB-PSNR {rgb:.4f} dB (published 23.14 / 0.6577)", end="")  # fmt: skip
        assert psnr == pytest.approx(23.14, abs=0.02)
        assert ssim == pytest.approx(0.6577, abs=0.002)
    print(f"\nproject LR bit-identical to MATLAB's for {same}/100 images; "
          f"{time.perf_counter() - start:.1f}s")  # fmt: skip
