import re
import sys
from functools import partial

import numpy as np
import pytest
import yaml
from conftest import PROJECT_ROOT, optional_extra

from srgan_pipeline.params import validate_params
from srgan_pipeline.pipelines.evaluation.nodes import _figure_images

SHIPPED = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_evaluation.yml").read_text())
# without LPIPS and NIQE, whose real weights cannot be downloaded here (tests/test_lpips_metric.py,
# tests/test_niqe.py, and the offline stop below)
BASE = {"evaluation": SHIPPED["evaluation"] | {"lpips": None, "niqe": None}}


def test_models_come_as_a_list_or_one_space_separated_string():
    models = partial(validate_params, "evaluation.models")
    assert models(["bicubic", "srgan"]) == ("bicubic", "srgan")
    assert models("bicubic srresnet bicubic") == ("bicubic", "srresnet")
    for bad in ([], "bicubic esrgan", None):
        with pytest.raises(ValueError, match="evaluation.models: must be a non-empty list"):
            models(bad)


def test_figure_images_named_per_set_or_the_first_few():
    names = ["img_001", "img_002", "img_003"]

    def figures(images):
        return validate_params("evaluation.figures", {"crop": 96, "default_count": 2,
                                                      "images": images})

    assert _figure_images(figures({}), "urban100", names) == ["img_001", "img_002"]
    assert _figure_images(figures({"urban100": ["img_003"]}), "urban100", names) == ["img_003"]
    with pytest.raises(ValueError, match=r"evaluation.figures.images.urban100.*img_404"):
        _figure_images(figures({"urban100": ["img_404"]}), "urban100", names)


def test_images_per_set_scores_the_first_n_by_name():
    from srgan_pipeline.pipelines.evaluation.nodes import evaluate_models

    rng = np.random.default_rng(0)
    pairs = {}
    for name in ("c", "a", "b"):
        hr = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        pairs[f"s/HR/{name}"] = lambda hr=hr: hr
        pairs[f"s/LR_x4/{name}"] = lambda hr=hr: hr[::4, ::4]
    params = {**BASE["evaluation"], "models": ["bicubic"], "images_per_set": 2, "device": "cpu",
              "figures": {"crop": 96, "default_count": 0, "images": {}}}
    per_image, _, _ = evaluate_models(pairs, None, None, 4, params)
    assert list(per_image.image) == ["a", "b"]
    with pytest.raises(ValueError, match="evaluation.images_per_set: must be >= 1, got 0"):
        evaluate_models(pairs, None, None, 4, {**params, "images_per_set": 0})


def _pairs(count: int = 2) -> dict:
    rng = np.random.default_rng(0)
    pairs = {}
    for name in [f"i{n}" for n in range(count)]:
        hr = rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)
        pairs[f"s/HR/{name}"] = lambda hr=hr: hr
        pairs[f"s/LR_x4/{name}"] = lambda hr=hr: hr[::4, ::4]
    return pairs


def _unread_checkpoint():
    raise AssertionError("a checkpoint was read")


def test_runtime_openvino_without_the_package_fails_before_reading_a_checkpoint(monkeypatch):
    from srgan_pipeline.pipelines.evaluation.nodes import evaluate_models

    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` -> ImportError
    params = {**BASE["evaluation"], "models": ["bicubic", "srresnet"], "device": "cpu",
              "runtime": "openvino"}
    with pytest.raises(ImportError, match=re.escape(
            'evaluation.runtime=openvino needs the OpenVINO package, which is not installed: '
            'pip install -e ".[openvino]"')):
        evaluate_models(_pairs(), _unread_checkpoint, _unread_checkpoint, 4, params)


def test_runtime_openvino_scores_as_torch_and_is_tagged(monkeypatch):
    optional_extra("openvino", "openvino")
    import torch

    from srgan_pipeline.models import Generator
    from srgan_pipeline.pipelines.evaluation import nodes

    torch.manual_seed(0)
    generator = Generator(scale=4, channels=8, num_blocks=1).eval()
    monkeypatch.setattr(nodes, "generator_from_checkpoint", lambda state: generator)
    tags = {}
    monkeypatch.setattr(nodes.tracking, "set_tags", tags.update)
    params = {**BASE["evaluation"], "models": ["bicubic", "srresnet"], "device": "cpu",
              "figures": {"crop": 16, "default_count": 0, "images": {}}}
    scores = {}
    for runtime in ("torch", "openvino"):
        per_image, _, _ = nodes.evaluate_models(_pairs(), dict, dict, 4,
                                                {**params, "runtime": runtime})
        scores[runtime] = per_image.set_index(["image", "model"])
        assert tags["evaluation.runtime"] == runtime
    assert list(scores["openvino"].precision) == ["fp64", "fp32"] * 2
    # fp32 in both: the same function, summed in another order (<= 1 grey level per pixel)
    gap = (scores["openvino"].psnr_y - scores["torch"].psnr_y).abs()
    assert gap.max() < 0.01


def test_the_precision_tagged_and_tabled_is_the_one_that_ran(monkeypatch, openvino_runs_fp32):
    """bf16 asked of OpenVINO on a CPU where it runs fp32: the tag and every generator's rows
    say fp32 (the tile stays bf16's, the one asked for)."""
    import torch

    from srgan_pipeline.models import Generator
    from srgan_pipeline.pipelines.evaluation import nodes

    torch.manual_seed(0)
    generator = Generator(scale=4, channels=8, num_blocks=1).eval()
    monkeypatch.setattr(nodes, "generator_from_checkpoint", lambda state: generator)
    tags = {}
    monkeypatch.setattr(nodes.tracking, "set_tags", tags.update)
    params = {**BASE["evaluation"], "models": ["bicubic", "srresnet", "srgan"], "device": "cpu",
              "precision": "bf16", "runtime": "openvino", "tile": {"fp32": 8, "bf16": 16},
              "figures": {"crop": 16, "default_count": 0, "images": {}}}
    per_image, _, _ = nodes.evaluate_models(_pairs(), dict, dict, 4, params)
    assert tags == {"evaluation.precision": "fp32", "evaluation.tile": 16,
                    "evaluation.runtime": "openvino",
                    "evaluation.precision_reason": "evaluation.precision=bf16, as set"}
    assert per_image.groupby("model").precision.unique().to_dict() == {
        "bicubic": ["fp64"], "srgan": ["fp32"], "srresnet": ["fp32"]}


def test_offline_without_the_lpips_backbone_the_run_stops_before_reading_a_checkpoint(
        offline_torch_hub):
    from srgan_pipeline.pipelines.evaluation.nodes import evaluate_models

    params = {**SHIPPED["evaluation"], "models": ["bicubic", "srresnet"], "device": "cpu"}
    with pytest.raises(RuntimeError, match=f"{offline_torch_hub}/checkpoints/alexnet-owt-7be5be79"):
        evaluate_models(_pairs(), _unread_checkpoint, _unread_checkpoint, 4, params)
    with pytest.raises(RuntimeError, match=f"{offline_torch_hub}/pyiqa/niqe_modelparameters.mat"):
        evaluate_models(_pairs(), _unread_checkpoint, _unread_checkpoint, 4,
                        {**params, "lpips": None})


def test_with_no_registry_the_figure_shows_the_evaluation_and_says_why():
    """serving.registry.model_name: null (register_generators' report says so): the node reads
    no registry, draws this evaluation's models and names the reason under the panel."""
    from srgan_pipeline.evaluation import _caption
    from srgan_pipeline.pipelines.evaluation.nodes import plot_perception_distortion

    summary = {"s": {model: {"psnr_y": psnr, "lpips": 0.2, "lpips_weights": "alex/random"}
                     for model, psnr in [("bicubic", 20.0), ("srgan", 21.0)]}}
    report = {"model_name": None, "alias": "champion", "score_rule": "mean psnr_y over s",
              "sets": ["s"], "registered": [], "champion": None,
              "skipped_because": "serving.registry.model_name is null"}
    figure, points = plot_perception_distortion(summary, report)
    assert figure.shape == (380, 440, 3)
    assert [p["label"] for p in points["sets"]["s"]["points"]] == ["bicubic", "srgan"]
    assert _caption(points["sets"]["s"], points["registry"], "s") == (
        "registered versions not shown: serving.registry.model_name is null")
