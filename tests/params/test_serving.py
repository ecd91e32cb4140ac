"""The `serving` parameter block: the shipped settings pass, each mistake names its key."""

from __future__ import annotations

import pytest
import yaml
from conftest import PROJECT_ROOT, conf_parameters, with_settings

from srgan_pipeline.params import validate_params

SHIPPED = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_serving.yml").read_text())["serving"]


def _with(path: str, value):
    return with_settings(SHIPPED, {path: value})


@pytest.mark.parametrize("env", ["base", "convergence"])
def test_the_shipped_settings_are_valid(env):
    settings = validate_params("serving", conf_parameters(env)["serving"])
    assert settings.max_pixels > 0


def test_several_sets_from_the_command_line_are_one_spaced_value():
    settings = validate_params("serving", _with("registry.sets", "urban100 set14"))
    assert settings.registry.sets == ("urban100", "set14")


def test_sets_from_yaml_are_a_list():
    settings = validate_params("serving", _with("registry.sets", ["urban100", "set14"]))
    assert settings.registry.sets == ("urban100", "set14")
    with pytest.raises(ValueError, match=r"serving\.registry\.sets\[1\]: must be a string"):
        validate_params("serving", _with("registry.sets", ["urban100", 14]))


@pytest.mark.parametrize("path, value, words", [
    ("max_pixel", 10, "serving.max_pixel: unknown key; valid keys: log_models, max_pixels"),
    ("max_pixels", 0, "serving.max_pixels: must be >= 1, got 0"),
    ("max_pixels", "512", "serving.max_pixels"),
    ("registry.metric", "psnr", "serving.registry.metric"),
    ("registry.alias", "latest", "serving.registry.alias: must be an MLflow alias"),
    ("registry.alias", "v2", "serving.registry.alias: must be an MLflow alias"),
    ("registry.aliass", "x", "serving.registry.aliass: unknown key; valid keys: model_name"),
])
def test_a_mistake_names_its_key(path, value, words):
    with pytest.raises(ValueError, match=words):
        validate_params("serving", _with(path, value))


def test_the_champion_can_be_chosen_on_a_perceptual_metric_that_is_scored():
    from srgan_pipeline.params import rules_between_blocks

    evaluation = conf_parameters("base")["evaluation"]
    blocks = {"serving": validate_params("serving", _with("registry.metric", "lpips")),
              "evaluation": validate_params("evaluation", evaluation, scale=4)}
    assert rules_between_blocks(blocks) == []
    blocks["evaluation"] = validate_params("evaluation", with_settings(evaluation,
                                                                       {"lpips": None}), scale=4)
    error, = rules_between_blocks(blocks)
    assert "serving.registry.metric is lpips, but evaluation.lpips is null" in error
