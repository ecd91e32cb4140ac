"""The parameter schemas: every conf environment fits them, and errors read as parameter paths."""

from __future__ import annotations

import pytest
from conftest import conf_parameters, with_settings

from srgan_pipeline.params import (
    PARAMETER_BLOCKS,
    ParameterError,
    blocks_read_by,
    rules_between_blocks,
    validate_params,
)

BASE = conf_parameters("local")  # conf/local is empty: conf/base alone


def with_value(block: str, dotted: str, value):
    """conf/base's block with one key (``a.b.c``) set, as --params would; the faces source,
    which conf/base leaves for the user to point somewhere, is turned off."""
    off = {"train_sources.faces.enabled": False} if block == "data_prep" else {}
    return with_settings(BASE[block], off | {dotted: value})


def check(block: str, params) -> None:
    validate_params(block, params, scale=BASE["scale"])


@pytest.mark.parametrize("env", ["quickstart", "convergence"])
def test_every_block_of_every_environment_is_valid(env):
    params = conf_parameters(env)
    assert set(params) == set(PARAMETER_BLOCKS)
    blocks = {block: validate_params(block, value, scale=params["scale"])
              for block, value in params.items()}
    assert rules_between_blocks(blocks) == []


def test_conf_base_is_valid_but_for_the_faces_source_it_asks_the_user_to_point_somewhere():
    for block in ("scale", "train_gan", "evaluation", "upscale"):
        check(block, BASE[block])
    with pytest.raises(ParameterError) as error:
        check("data_prep", BASE["data_prep"])
    assert str(error.value).splitlines() == [
        "data_prep.train_sources.faces: this source has no location. Set "
        "data_prep.train_sources.faces.path=<folder of images> or "
        "data_prep.train_sources.faces.url=<archive URL> (for example with kedro run "
        '--params="data_prep.train_sources.faces.path=/data/my_images"), or turn it off with '
        "data_prep.train_sources.faces.enabled=false."
    ]
    check("data_prep", with_value("data_prep", "show_progress", False))


@pytest.mark.parametrize(("block", "key", "value", "message"), [
    ("upscale", "imput_dir", "/x",
     "upscale.imput_dir: unknown key; valid keys: device, precision, tile, runtime, input_dir, "
     "model, max_pixels"),
    ("evaluation", "model", "bicubic", "evaluation.model: unknown key; valid keys: device, "
     "precision, tile, runtime, models, "),
    ("data_prep", "min_sise", 50, "data_prep.min_sise: unknown key; valid keys: raw_dir, "),
    ("data_prep", "tiles.sise", 96, "data_prep.tiles.sise: unknown key; valid keys: size, stride"),
    ("data_prep", "eval_sets.urban100.pth", "/x",
     "data_prep.eval_sets.urban100.pth: unknown key; valid keys: kind, enabled, path, url, "),
    ("train_gan", "generator.blocks", 8,
     "train_gan.generator.blocks: unknown key; valid keys: channels, num_blocks, "),
])
def test_unknown_keys_are_refused_with_the_valid_ones_listed(block, key, value, message):
    with pytest.raises(ParameterError, match="^" + message.replace(".", r"\.")):
        check(block, with_value(block, key, value))


@pytest.mark.parametrize(("block", "key", "value", "message"), [
    ("train_gan", "adversarial.lr", -1, "train_gan.adversarial.lr: must be > 0, got -1"),
    ("train_gan", "pretrain.iterations", 1.0e6,
     "train_gan.pretrain.iterations: must be an integer, got 1000000.0"),
    ("train_gan", "resume", 1, "train_gan.resume: must be true or false, got 1"),
    ("train_gan", "pretrain.lr", True, "train_gan.pretrain.lr: must be a number, got True"),
    ("train_gan", "pretrain.ema_decay", 1.0, "train_gan.pretrain.ema_decay: must be < 1, got 1.0"),
    ("train_gan", "device", "gpu", "train_gan.device: must be 'auto', 'cpu', 'cuda', "),
    ("train_gan", "perceptual.layer", "conv5_4",
     "train_gan.perceptual.layer: must be a VGG19 layer (relu1_1, "),
    ("train_gan", "critic.base_channels", None,
     "train_gan.critic.base_channels: must be an integer, got None"),
    ("upscale", "model", "esrgan", "upscale.model: must be 'srresnet', 'srgan' or an MLflow "
                                   "model URI"),
    ("upscale", "tile.bf16", 0, "upscale.tile.bf16: must be >= 1, got 0"),
    ("upscale", "tile", 256, "upscale.tile: must be a mapping of keys, got 256"),
    ("upscale", "precision", "fp16", "upscale.precision: must be 'auto', 'fp32' or 'bf16'"),
    ("evaluation", "precision", "bfloat16", "evaluation.precision: must be 'auto', 'fp32' or"),
    ("upscale", "runtime", "onnx", "upscale.runtime: must be 'torch' or 'openvino', got 'onnx'"),
    ("evaluation", "runtime", None, "evaluation.runtime: must be 'torch' or 'openvino'"),
    ("evaluation", "models", "bicubic esrgan",
     "evaluation.models: must be a non-empty list drawn from ['bicubic', 'srresnet', 'srgan']"),
    ("evaluation", "images_per_set", 0, "evaluation.images_per_set: must be >= 1, got 0"),
    ("evaluation", "figures.images.urban100", "img_004",
     "evaluation.figures.images.urban100: must be a list, got 'img_004'"),
    ("data_prep", "min_size", 2, "data_prep.min_size: must be an integer >= scale (4), got 2"),
    ("data_prep", "tiles.stride", 960,
     "data_prep.tiles: stride (960) is larger than size (480): parts of every image"),
    ("data_prep", "show_progress", "yes", "data_prep.show_progress: must be true or false"),
])
def test_bad_values_name_the_full_path_and_what_is_expected(block, key, value, message):
    with pytest.raises(ParameterError) as error:
        check(block, with_value(block, key, value))
    assert str(error.value).startswith(message)


def test_a_missing_key_is_an_error_since_defaults_live_in_conf_base_only():
    upscale = {k: v for k, v in BASE["upscale"].items() if k != "tile"}
    with pytest.raises(ParameterError, match=r"^upscale\.tile: missing; conf/base/"
                                             r"parameters_upscale\.yml lists every key"):
        check("upscale", upscale)


def test_every_error_of_a_block_is_reported_at_once():
    params = with_value("train_gan", "pretrain.lr", 0)
    params["adversarial"]["n_critic"] = 0
    with pytest.raises(ParameterError) as error:
        check("train_gan", params)
    assert str(error.value).splitlines() == ["train_gan.pretrain.lr: must be > 0, got 0",
                                             "train_gan.adversarial.n_critic: must be >= 1, got 0"]


def test_null_only_where_documented():
    for block, key in [("train_gan", "pretrain.max_minutes"), ("train_gan", "pretrain.ema_decay"),
                       ("train_gan", "generator.residual_init_scale"),
                       ("evaluation", "crop_border"), ("evaluation", "images_per_set"),
                       ("data_prep", "eval_sets")]:
        check(block, with_value(block, key, None))
    with pytest.raises(ParameterError, match=r"adversarial\.max_minutes: must be > 0, got 0"):
        check("train_gan", with_value("train_gan", "adversarial.max_minutes", 0))


@pytest.mark.parametrize(("phase", "key", "value"), [
    ("pretrain", "critic_lr", 1e-4), ("pretrain", "critic_betas", [0.0, 0.9]),
    ("pretrain", "n_critic", 5), ("pretrain", "gp_weight", 10.0),
    ("pretrain", "adversarial_weight", 1e-3),
    ("adversarial", "ema_decay", 0.999),
])
def test_a_phase_refuses_the_other_phases_fields(phase, key, value):
    with pytest.raises(ParameterError, match=rf"^train_gan\.{phase}\.{key}: unknown key"):
        check("train_gan", with_value("train_gan", f"{phase}.{key}", value))


def test_the_learning_rate_schedule_is_checked_as_a_whole():
    base = BASE["train_gan"]["adversarial"]
    assert base["lr_schedule"] == "step" and base["lr_milestones"] == [100000]  # the paper
    assert validate_params("train_gan", BASE["train_gan"]).adversarial.lr_milestones == (100000,)
    for change, message in [
        ({"lr_milestones": []}, "lr_schedule is 'step' but lr_milestones is empty"),
        ({"lr_milestones": [500, 100]}, r"must be increasing steps, got \[500, 100\]"),
        ({"lr_schedule": "constant"}, r"lr_milestones \[100000\] apply to lr_schedule 'step' only"),
        ({"lr_gamma": 0.0}, r"adversarial\.lr_gamma: must be > 0"),
        ({"lr_milestones": [0]}, r"adversarial\.lr_milestones\[0\]: must be >= 1"),
    ]:
        params = {**BASE["train_gan"], "adversarial": {**base, **change}}
        with pytest.raises(ParameterError, match=message):
            check("train_gan", params)


def test_a_time_budgets_floor_and_the_compile_mode_are_checked():
    base = BASE["train_gan"]["pretrain"]
    assert base["compile"] == "auto" and base["min_iterations"] is None  # by device, no floor
    for change, message in [
        ({"min_iterations": 10}, r"min_iterations \(10\) is a floor under the time budget, "
                                 "but max_minutes is null"),
        ({"max_minutes": 5, "min_iterations": 0}, r"pretrain\.min_iterations: must be >= 1"),
        ({"compile": "reduce_overhead"}, r"pretrain\.compile: must be 'auto', 'default' or "
                                         r"'reduce-overhead', got 'reduce_overhead'"),
    ]:
        params = {**BASE["train_gan"], "pretrain": {**base, **change}}
        with pytest.raises(ParameterError, match=message):
            check("train_gan", params)
    floored = {**base, "max_minutes": 5, "min_iterations": 10, "compile": "reduce-overhead"}
    checked = validate_params("train_gan", {**BASE["train_gan"], "pretrain": floored})
    assert checked.pretrain.min_iterations == 10 and checked.pretrain.compile == "reduce-overhead"


def test_scale_relative_rules_follow_the_scale():
    tiles = {"size": 96, "stride": 48}
    assert validate_params("data_prep.tiles", tiles, scale=4).size == 96
    with pytest.raises(ParameterError, match=r"tiles\.size: must be a positive multiple of the "
                                             r"scale \(2\), got 97"):
        validate_params("data_prep.tiles", {"size": 97, "stride": 48}, scale=2)
    with pytest.raises(ParameterError, match=r"^scale: must be 2 or 4"):
        validate_params("scale", 3)


def test_sources_keep_their_documented_shortcuts():
    sources = validate_params("data_prep.eval_sets", {
        "a": {"builtin": "chelsea"}, "b": {"path": "/x", "url": "http://h/a.zip"},
        "c": {"enabled": False}, "d": {"url": "http://h/d.zip", "sha256": "AB" * 32}})
    assert sources["a"].builtin == ("chelsea",)
    assert sources["b"].location_kind() == "local"  # a folder on disk wins over a download
    assert sources["d"].sha256 == "ab" * 32


def test_evaluation_models_from_one_command_line_string():
    assert validate_params("evaluation.models", "bicubic srresnet") == ("bicubic", "srresnet")


def test_blocks_read_by_each_pipeline():
    from srgan_pipeline.pipelines import data_prep, evaluation, train_gan, upscale

    assert blocks_read_by(data_prep.create_pipeline()) == ["data_prep", "scale"]
    assert blocks_read_by(train_gan.create_pipeline()) == ["scale", "serving", "train_gan"]
    assert blocks_read_by(evaluation.create_pipeline()) == ["evaluation", "scale", "serving"]
    assert blocks_read_by(upscale.create_pipeline()) == ["upscale"]
    both = data_prep.create_pipeline() + train_gan.create_pipeline()
    assert blocks_read_by(both) == ["data_prep", "scale", "serving", "train_gan"]


def test_a_single_key_is_as_strict_as_in_its_block():
    # Nodes that receive one key (params:data_prep.min_size) check it alone.
    for path, value, message in [
        ("data_prep.min_size", 96.0, "data_prep.min_size: must be an integer, got 96.0"),
        ("data_prep.show_progress", 1, "data_prep.show_progress: must be true or false, got 1"),
        ("train_gan.pretrain.betas", ["0.9", 0.9],
         "train_gan.pretrain.betas[0]: must be a number, got '0.9'"),
        ("train_gan.pretrain.lr", float("nan"), "train_gan.pretrain.lr: must be a finite number"),
    ]:
        with pytest.raises(ParameterError) as error:
            validate_params(path, value, scale=4)
        assert str(error.value).startswith(message)


def between(scale: int, data_prep: dict, train_gan: dict) -> list[str]:
    return rules_between_blocks({
        "scale": scale, "data_prep": validate_params("data_prep", data_prep, scale=scale),
        "train_gan": validate_params("train_gan", train_gan, scale=scale)})


def test_every_crop_fits_the_smallest_tile_data_prep_stores():
    data_prep, train_gan = with_value("data_prep", "min_size", 96), BASE["train_gan"]
    assert between(4, data_prep, train_gan) == []
    # images kept down to 93 px are cut to 96 (a multiple of the scale): a 96 px crop fits
    assert between(4, with_value("data_prep", "min_size", 93), train_gan) == []
    assert between(4, with_value("data_prep", "min_size", 64), train_gan) == [
        f"train_gan.{phase}.patch_size (96) is larger than the smallest tile data_prep stores, "
        "64 px (data_prep.min_size=64 keeps images of 64 px a side, each then one tile): set the "
        "patch_size to 64 or less, or raise data_prep.min_size (smaller images are then "
        "skipped) to 96 or more" for phase in ("pretrain", "adversarial")]
    small_tiles = with_value("data_prep", "tiles", {"size": 88, "stride": 44})
    assert between(4, small_tiles, with_value("train_gan", "pretrain.patch_size", 64)) == [
        "train_gan.adversarial.patch_size (96) is larger than the smallest tile data_prep "
        "stores, 88 px (data_prep.tiles.size=88): set the patch_size to 88 or less, or raise "
        "data_prep.tiles.size to 96 or more"]


def test_the_registry_chooses_on_sets_data_prep_prepares():
    def refusals(sets, read=("data_prep", "evaluation", "serving")):
        blocks = {"data_prep": with_value("data_prep", "show_progress", False),
                  "evaluation": BASE["evaluation"],
                  "serving": with_value("serving", "registry.sets", sets)}
        return rules_between_blocks({block: validate_params(block, blocks[block])
                                     for block in read})

    assert refusals(None) == refusals(["urban100"]) == []
    assert refusals(["set14", "urban100", "b100"]) == [
        "serving.registry.sets names ['b100', 'set14'], which data_prep.eval_sets does not "
        "prepare (it prepares ['urban100']): add them to data_prep.eval_sets, or choose among "
        "those (null: every scored set)"]
    # evaluation alone scores the sets an earlier data_prep prepared
    assert refusals(["set14"], read=("evaluation", "serving")) == []


def test_a_rule_between_blocks_applies_when_the_run_reads_both():
    # train_gan alone trains on the store an earlier data_prep wrote, with its settings then
    train_gan = validate_params("train_gan", BASE["train_gan"], scale=4)
    assert rules_between_blocks({"scale": 4, "train_gan": train_gan}) == []
