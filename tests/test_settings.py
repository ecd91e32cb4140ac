"""settings.py's config loader: environments are soft-merged into conf/base, so an environment
file lists only what differs, and a broken merge shows here before any run."""

from __future__ import annotations

import pytest
from conftest import conf_parameters

from srgan_pipeline.sources import parse_sources

BASE = conf_parameters("base")
QUICKSTART = conf_parameters("quickstart")
CONVERGENCE = conf_parameters("convergence")
URBAN100 = "../shared/datasets/Urban100/HR"


def enabled_sources(params: dict) -> dict[str, list]:
    """The sources data_prep would fetch: conf/base's turned-off ones are left out."""
    return {group: parse_sources(params["data_prep"][group], f"data_prep.{group}")
            for group in ("train_sources", "eval_sets")}


def test_local_is_conf_base_alone():
    assert conf_parameters("local") == BASE


def test_the_quickstart_overrides_its_values_and_inherits_the_rest():
    train, base = QUICKSTART["train_gan"], BASE["train_gan"]
    assert train["pretrain"]["iterations"] == 1000 and train["pretrain"]["batch_size"] == 32
    assert train["generator"]["input_skip"] is True and train["critic"]["base_channels"] == 16
    assert train["adversarial"]["lr_schedule"] == "constant"
    assert train["adversarial"]["lr_milestones"] == []  # a list replaces conf/base's [100000]
    assert QUICKSTART["data_prep"]["tiles"] == {"size": 192, "stride": 96}
    assert QUICKSTART["upscale"]["input_dir"].endswith("skimage_heldout/LR_x4")
    # inherited, key by key, from conf/base
    for phase in ("pretrain", "adversarial"):
        for key in ("betas", "seed", "amp_bf16", "channels_last", "pixel_loss"):
            assert train[phase][key] == base[phase][key], (phase, key)
    assert train["adversarial"]["n_critic"] == 5 and train["adversarial"]["gp_weight"] == 10.0
    assert train["generator"]["residual_init_scale"] == 0.1
    assert train["distributed"] == base["distributed"]
    for block in ("scale", "serving"):
        assert QUICKSTART[block] == BASE[block]
    differ = {"figures": None, "lpips": None, "niqe": None}
    assert QUICKSTART["evaluation"] | differ == BASE["evaluation"] | differ
    # offline: the explicit random-backbone opt-in, and no NIQE (its model cannot be had)
    assert QUICKSTART["evaluation"]["lpips"] == {"net": "alex", "weights": "random"}
    assert QUICKSTART["evaluation"]["niqe"] is None
    assert QUICKSTART["upscale"] | {"input_dir": None} == BASE["upscale"] | {"input_dir": None}
    assert QUICKSTART["data_prep"]["archive_limits"] == BASE["data_prep"]["archive_limits"]
    assert QUICKSTART["data_prep"]["min_size"] == 96


def test_the_convergence_yardstick_overrides_its_values_and_inherits_the_rest():
    pretrain = CONVERGENCE["train_gan"]["pretrain"]
    assert (pretrain["lr"], pretrain["amp_bf16"], pretrain["max_minutes"]) == (2e-4, False, 15)
    assert CONVERGENCE["train_gan"]["generator"]["residual_init_scale"] is None
    assert pretrain["batch_size"] == 16 and pretrain["patch_size"] == 96  # conf/base's
    assert CONVERGENCE["evaluation"]["models"] == ["bicubic", "srresnet"]
    assert CONVERGENCE["evaluation"]["lpips"] is CONVERGENCE["evaluation"]["niqe"] is None
    assert CONVERGENCE["serving"]["registry"]["model_name"] is None
    assert CONVERGENCE["serving"]["max_pixels"] == BASE["serving"]["max_pixels"]


def test_each_environment_fetches_only_its_own_sources():
    quickstart, convergence = enabled_sources(QUICKSTART), enabled_sources(CONVERGENCE)
    assert [s.name for s in quickstart["train_sources"]] == ["skimage_photos"]
    assert [s.name for s in quickstart["eval_sets"]] == ["skimage_heldout"]
    assert [s.name for s in convergence["train_sources"]] == ["sunhays80"]
    (urban100,) = convergence["eval_sets"]
    assert (urban100.kind, urban100.path, urban100.url, urban100.images_in) == (
        "local", URBAN100, None, None)


def test_urban100_joins_the_quickstart_from_a_folder_as_documented():
    """docs/data.md: enabled and pointed at a folder, it reads that folder itself (not
    conf/base's archive path inside it)."""
    runtime = {"data_prep": {"eval_sets": {"urban100": {"enabled": True, "path": URBAN100}}}}
    sets = enabled_sources(conf_parameters("quickstart", runtime))["eval_sets"]
    urban100 = next(s for s in sets if s.name == "urban100")
    assert (urban100.kind, urban100.path, urban100.url, urban100.images_in) == (
        "local", URBAN100, None, None)


@pytest.mark.parametrize("params", [QUICKSTART, CONVERGENCE], ids=["quickstart", "convergence"])
def test_urban100_figures_outside_conf_base_are_the_first_of_the_set(params):
    """conf/base's Urban100 picks would be merged in: the environments keep the default of an
    unlisted set (its first default_count images), which a short --images subset holds."""
    figures = params["evaluation"]["figures"]
    names = [f"img_{i:03d}" for i in range(1, 101)]
    assert figures["images"]["urban100"] == names[: figures["default_count"]]
