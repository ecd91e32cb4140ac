import numpy as np
import pandas as pd
import pytest

from srgan_pipeline.evaluation import comparison_figure, group_pairs, summary_table
from srgan_pipeline.pipelines.evaluation.nodes import evaluate_models
from srgan_pipeline.training import build_generator, describe_generator


def eval_pairs(names, eval_set="urban100", size=32):
    rng = np.random.default_rng(0)
    pairs = {}
    for name in names:
        hr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        pairs[f"{eval_set}/HR/{name}"] = lambda hr=hr: hr
        pairs[f"{eval_set}/LR_x4/{name}"] = lambda hr=hr: hr[::4, ::4]
    return pairs


def tiny_checkpoint():
    generator = build_generator({"scale": 4, "channels": 8, "num_blocks": 1}, seed=0)
    return {"generator_config": describe_generator(generator),
            "generator": generator.state_dict()}


def test_models_come_as_a_list_or_one_space_separated_string():
    pairs = eval_pairs(["a"])
    for models, expected in ((["bicubic", "srgan"], ["bicubic", "srgan"]),
                             ("bicubic srresnet", ["bicubic", "srresnet"])):
        per_image, _, _ = evaluate_models(pairs, tiny_checkpoint, tiny_checkpoint, 4,
                                          {"models": models, "figures": {"default_count": 0}})
        assert list(per_image.model) == expected
    for bad in ([], "bicubic esrgan", None):
        with pytest.raises(ValueError, match="evaluation.models"):
            evaluate_models(pairs, None, None, 4, {"models": bad})


def test_figure_images_named_per_set_or_the_first_few():
    pairs = eval_pairs(["img_001", "img_002", "img_003"])

    def figures(settings):
        _, samples, figures = evaluate_models(pairs, None, None, 4,
                                              {"models": "bicubic", "figures": settings})
        assert sorted(samples) == [f"{k}_bicubic" for k in sorted(figures)]
        return sorted(figures)

    assert figures({"default_count": 2}) == ["urban100/img_001", "urban100/img_002"]
    assert figures({"images": {"urban100": ["img_003"]}}) == ["urban100/img_003"]
    with pytest.raises(ValueError, match=r"evaluation.figures.images.urban100.*img_404"):
        figures({"images": {"urban100": ["img_404"]}})


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


def test_images_per_set_scores_the_first_n_by_name():
    pairs = eval_pairs(["c", "a", "b"], eval_set="s")
    params = {"models": ["bicubic"], "images_per_set": 2, "figures": {"default_count": 0}}
    per_image, _, _ = evaluate_models(pairs, None, None, 4, params)
    assert list(per_image.image) == ["a", "b"]
    with pytest.raises(ValueError, match="evaluation.images_per_set"):
        evaluate_models(pairs, None, None, 4, {**params, "images_per_set": 0})
