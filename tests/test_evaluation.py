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


# ------------------------------------------------------------------ perception-distortion figure

REAL, RANDOM = "alex/imagenet", "alex/random"
RULE = "mean psnr_y over urban100"


def _summary(weights: str = REAL) -> dict:
    """An evaluation summary (JSON): urban100 with three models, set5 with bicubic only."""
    return {"urban100": {model: {"psnr_y": psnr, "lpips": lpips, "lpips_weights": weights}
                         for model, psnr, lpips in [("bicubic", 23.1, 0.47),
                                                    ("srresnet", 25.3, 0.30),
                                                    ("srgan", 24.6, 0.21)]},
            "set5": {"bicubic": {"psnr_y": 28.4, "lpips": 0.34, "lpips_weights": weights}}}


def _version(number, model, scores, aliases=(), rule=RULE, weights=REAL) -> dict:
    """One version as serving.registry.scored_versions describes it."""
    return {"version": number, "model": model, "aliases": list(aliases), "score_rule": rule,
            "scores": scores, "lpips_weights": weights, "niqe_model": None}


def _registry(**changes) -> dict:
    """A registry as serving.nodes.compared_versions gives it: this evaluation registered
    srresnet as v5 and srgan as v6; v2 holds @champion; v1 predates per-set tags; v4 was scored
    with a random backbone; v7 under another rule."""
    return {"model_name": "gen", "alias": "champion", "score_rule": RULE, "sets": ["urban100"],
            "evaluated": {"srresnet": 5, "srgan": 6}, "versions": [
                _version(1, "srresnet", {}),
                _version(2, "srresnet", {"urban100": {"psnr_y": 24.9, "lpips": 0.33}},
                         aliases=["champion"]),
                _version(3, "srgan", {"urban100": {"psnr_y": 24.0, "lpips": 0.25}}),
                _version(4, "srgan", {"urban100": {"psnr_y": 24.2, "lpips": 0.5}},
                         weights=RANDOM),
                _version(5, "srresnet", {"urban100": {"psnr_y": 25.3, "lpips": 0.30}}),
                _version(6, "srgan", {"urban100": {"psnr_y": 24.6, "lpips": 0.21}}),
                _version(7, "srgan", {"set5": {"psnr_y": 29.0, "lpips": 0.1}},
                         rule="mean psnr_y over set5"),
                _version(8, "srgan", {"urban100": {"psnr_y": 24.3}})]} | changes


def test_the_figure_places_every_compared_version_beside_the_evaluation():
    from srgan_pipeline.evaluation import perception_distortion_figure, perception_distortion_points

    points = perception_distortion_points(_summary(), _registry())
    urban = points["sets"]["urban100"]
    drawn = {(p["label"], p["source"]): (p["psnr_y"], p["lpips"]) for p in urban["points"]}
    assert drawn == {("bicubic", "evaluation"): (23.1, 0.47),
                     ("srresnet v5", "evaluation"): (25.3, 0.30),  # once, with its version
                     ("srgan v6", "evaluation"): (24.6, 0.21),
                     ("srresnet v2 @champion", "registry"): (24.9, 0.33),
                     ("srgan v3", "registry"): (24.0, 0.25)}
    assert [p["version"] for p in urban["points"] if p["champion"]] == [2]
    # v1 (registered before per-set tags), v8 (no LPIPS), v4 (random backbone: NOT LPIPS, never
    # beside a real one) are counted, not drawn; v7 is under another rule: not compared at all
    assert urban["left_out"] == {"no per-set scores (registered before they were tagged)": 1,
                                 "scored without LPIPS": 1,
                                 "LPIPS-alex/random, not comparable": 1}
    assert points["registry"] == {
        "model_name": "gen", "alias": "champion", "score_rule": RULE, "sets": ["urban100"],
        "not_shown_because": None, "champion": 2, "versions": 8, "other_rules": 1}
    # set5 is not in the rule: its panel has the evaluation's models only
    assert [p["label"] for p in points["sets"]["set5"]["points"]] == ["bicubic"]
    assert perception_distortion_figure(points).shape == (380, 2 * 440, 3)


def test_random_backbone_versions_are_drawn_only_beside_a_random_backbone():
    from srgan_pipeline.evaluation import perception_distortion_points

    urban = perception_distortion_points(_summary(RANDOM), _registry())["sets"]["urban100"]
    assert [p["label"] for p in urban["points"] if p["source"] == "registry"] == ["srgan v4"]
    assert urban["left_out"]["LPIPS-alex/imagenet, not comparable"] == 2  # v2 and v3


def test_without_registered_versions_the_figure_says_why():
    from srgan_pipeline.evaluation import (
        _caption,
        perception_distortion_figure,
        perception_distortion_points,
    )

    for registry, why in [(None, "no registry"),
                          (_registry(not_shown_because="a subset"), "a subset")]:
        points = perception_distortion_points(_summary(), registry)
        urban = points["sets"]["urban100"]
        assert {p["source"] for p in urban["points"]} == {"evaluation"}
        assert urban["left_out"] == {}
        assert _caption(urban, points["registry"], "urban100") == (
            f"registered versions not shown: {why}")
    # this evaluation's generators keep their versions (and the alias's mark) all the same
    assert [p["label"] for p in urban["points"]] == ["bicubic", "srresnet v5", "srgan v6"]
    without_lpips = {s: {m: {"psnr_y": r["psnr_y"]} for m, r in models.items()}
                     for s, models in _summary().items()}
    points = perception_distortion_points(without_lpips, _registry())
    assert points["sets"]["urban100"] == {"lpips_weights": None, "points": [], "left_out": {}}
    assert perception_distortion_figure(points).shape == (380, 880, 3)
