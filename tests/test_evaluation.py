"""srgan_pipeline.evaluation: pairs, per-model functions, tables and figures, without Kedro."""

import numpy as np
import pandas as pd
import pytest
import torch

from srgan_pipeline.evaluation import (
    comparison_figure,
    group_pairs,
    model_functions,
    summary_markdown,
    summary_table,
)
from srgan_pipeline.inference import plan_inference
from srgan_pipeline.metrics import bicubic_upscale
from srgan_pipeline.models import Generator


def test_pairs_group_by_set_and_a_missing_lr_is_an_error():
    pairs = {"a/HR/x": 1, "a/LR_x4/x": 2, "b/HR/y": 3, "b/LR_x4/y": 4}
    assert group_pairs(pairs, 4) == {"a": {"x": (2, 1)}, "b": {"y": (4, 3)}}
    with pytest.raises(KeyError, match="re-run data_prep"):
        group_pairs({"a/HR/x": 1}, 4)


def test_summary_gain_is_relative_to_bicubic_of_the_same_set():
    per_image = pd.DataFrame([
        {"set": "s", "image": i, "model": m, "psnr_y": p, "ssim_y": 0.5, "psnr_rgb": p - 1}
        for i, (m, p) in enumerate([("bicubic", 20.0), ("bicubic", 22.0), ("srgan", 23.0),
                                    ("srgan", 25.0)])
    ])
    summary = summary_table(per_image).set_index("model")
    assert summary.loc["bicubic", "psnr_y"] == 21.0
    assert summary.loc["srgan", "psnr_y_vs_bicubic"] == 3.0
    assert summary.loc["srgan", "images"] == 2


def test_comparison_figure_puts_five_equal_panels_side_by_side():
    rng = np.random.default_rng(0)
    hr = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    panels = {"LR": hr[::4, ::4], "bicubic": hr, "srresnet": hr, "srgan": hr, "HR": hr}
    figure = comparison_figure(panels, scale=4, crop=32, zoom=2)
    assert figure.shape == (32 * 2 + 14, 5 * 64 + 4 * 4, 3)


def test_each_model_has_its_function_and_the_precision_it_runs_in():
    torch.manual_seed(0)
    upscaler = plan_inference("cpu", "fp32", 16).prepare(Generator(channels=8, num_blocks=1))
    functions, precisions = model_functions(["bicubic", "srgan"], {"srgan": upscaler}, 4)
    lr = np.random.default_rng(0).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    assert list(functions) == ["bicubic", "srgan"]
    assert np.array_equal(functions["bicubic"](lr), bicubic_upscale(lr, 4))
    assert np.array_equal(functions["srgan"](lr), upscaler.upscale(lr))
    assert precisions == {"bicubic": "fp64", "srgan": "fp32"}


def test_the_markdown_table_shows_the_precision_when_recorded():
    per_image = pd.DataFrame([
        {"set": "s", "image": "a", "model": m, "precision": p, "psnr_y": 20.0 + i,
         "ssim_y": 0.5, "psnr_rgb": 19.0}
        for i, (m, p) in enumerate([("bicubic", "fp64"), ("srgan", "bf16")])])
    table = summary_markdown(summary_table(per_image))
    assert "| set | model | precision | images |" in table
    assert "| s | srgan | bf16 | 1 | 21.00 | 0.5000 | 19.00 | +1.00 |" in table


def test_perceptual_columns_say_their_direction_and_a_random_backbone():
    from srgan_pipeline.evaluation import PerceptualScores, score_images
    from srgan_pipeline.lpips_metric import LPIPSMetric

    rng = np.random.default_rng(0)
    hr = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    images = {"a": (lambda: hr[::4, ::4], lambda: hr)}
    functions = {"bicubic": lambda lr: bicubic_upscale(lr, 4), "copy": lambda lr: hr}
    rows, _ = score_images(images, functions, 4,
                           perceptual=PerceptualScores(LPIPSMetric("alex", "random")))
    assert [row["lpips"] == 0.0 for row in rows] == [False, True]  # the copy is the HR image
    assert {row["lpips_weights"] for row in rows} == {"alex/random"}
    per_image = pd.DataFrame([{"set": "s", **row} for row in rows])
    table = summary_markdown(summary_table(per_image))
    assert "| LPIPS-alex, RANDOM backbone: not LPIPS (lower is better) |" in table
    assert table.splitlines()[3].endswith("| 0.0000 |")


def test_niqe_is_on_grey_levels_and_absent_below_its_block_size(caplog):
    from scipy.ndimage import gaussian_filter
    from skimage.data import astronaut

    from srgan_pipeline.evaluation import PerceptualScores
    from srgan_pipeline.imaging import rgb_to_y
    from srgan_pipeline.niqe import PristineModel, niqe

    rng = np.random.default_rng(0)
    a = rng.normal(size=(36, 36))
    scores = PerceptualScores(niqe_model=PristineModel(rng.uniform(0.1, 3, 36),
                                                       a @ a.T / 36 + np.eye(36), "fabricated"))
    hr = astronaut()[:200, 100:300]
    sr = np.clip(gaussian_filter(hr.astype(float), (1, 1, 0)), 0, 255).astype(np.uint8)
    row = scores(sr, hr, 4)
    assert row["niqe"] == niqe(np.floor(rgb_to_y(sr[4:-4, 4:-4]) + 0.5), scores.niqe_model)
    assert row["niqe_model"] == "fabricated"
    assert np.isnan(scores(sr[:100], hr[:100], 4)["niqe"])  # 92 px after the crop
    assert "an image of 92 x 192 has none" in caplog.text
