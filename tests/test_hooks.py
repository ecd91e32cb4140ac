"""Parameters are checked before any work starts, through the command a user types.

Each test misspells or misplaces one setting and checks what a user would: the run fails,
names the parameter path and what is expected, and left nothing behind.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import pytest
import yaml
from conftest import PROJECT_ROOT, TINY_TRAINING, kedro_project, kedro_run_fails, with_settings

from srgan_pipeline.params.train_gan import PretrainParams


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def mlflow_run_ids(project: Path) -> list[str]:
    """Every MLflow run in the project's tracking store, deleted ones too (docs/tracking.md: a run
    refused by the parameter checks opens none); none when the run did not even create the store."""
    if not (project / "mlflow.db").exists():  # a client would create it
        return []
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    every = mlflow.entities.ViewType.ALL
    experiments = [e.experiment_id for e in client.search_experiments(view_type=every)]
    return sorted(run.info.run_id for run in client.search_runs(experiments, run_view_type=every))


@pytest.fixture
def trained(tiny_quickstart, tmp_path, monkeypatch) -> Path:
    """A private copy of the tiny quickstart project: prepared data and trained checkpoints,
    so a misspelt setting would otherwise run to the end with exit code 0."""
    workdir = tmp_path / "project"
    shutil.copytree(tiny_quickstart[0], workdir)
    return kedro_project(workdir, monkeypatch)


@pytest.fixture
def fresh(tmp_path, monkeypatch) -> Path:
    return kedro_project(tmp_path, monkeypatch)


def hook_run(pipeline, parameters: dict) -> None:
    """The hook as `kedro run` calls it, on a catalog holding ``parameters`` as Kedro does."""
    from kedro.io import DataCatalog

    from srgan_pipeline.hooks import ValidateParametersHook

    catalog = DataCatalog()
    catalog["parameters"] = parameters
    for name, value in parameters.items():
        catalog[f"params:{name}"] = value
    ValidateParametersHook().before_pipeline_run({}, pipeline, catalog)


def conf_base(block: str) -> dict:
    return yaml.safe_load((PROJECT_ROOT / f"conf/base/parameters_{block}.yml").read_text())[block]


def test_hook_checks_the_blocks_the_run_reads_and_refuses_unknown_blocks():
    from srgan_pipeline.pipelines import train_gan, upscale

    good = {"scale": 4, "train_gan": conf_base("train_gan"), "upscale": conf_base("upscale")}
    hook_run(train_gan.create_pipeline(), good)
    broken_upscale = {**good, "upscale": {**good["upscale"], "tile": {"fp32": 0, "bf16": 128}}}
    hook_run(train_gan.create_pipeline(), broken_upscale)  # not read by train_gan
    with pytest.raises(ValueError, match=r"upscale\.tile\.fp32: must be >= 1, got 0"):
        hook_run(upscale.create_pipeline(), broken_upscale)
    with pytest.raises(ValueError, match="upscal: unknown parameter block; valid blocks: scale, "):
        hook_run(upscale.create_pipeline(), {**good, "upscal": {"input_dir": "/x"}})
    with pytest.raises(ValueError) as error:
        hook_run(train_gan.create_pipeline(), {**good, "scale": 3})
    assert str(error.value).splitlines()[1:] == [
        "scale: must be 2 or 4 (the generator's upsampling factors), got 3"]


def conf_base_run(**changes: dict) -> dict:
    """Every block of conf/base (the faces source, left for the user to point somewhere, off),
    with ``changes`` per block: ``train_gan={"device": "cpu"}``."""
    blocks = {block: conf_base(block) for block in
              ("data_prep", "train_gan", "evaluation", "upscale", "serving")}
    blocks["data_prep"] = with_settings(blocks["data_prep"], {"train_sources.faces.enabled": False})
    return {"scale": 4} | {block: with_settings(value, changes.get(block, {}))
                           for block, value in blocks.items()}


@pytest.mark.parametrize(("pipelines", "changes", "message"), [
    ("train_gan", {"train_gan": {"pretrain.patch_size": 98}},
     "train_gan.pretrain.patch_size: must be a multiple of scale (4)"),
    ("train_gan", {"train_gan": {"adversarial.patch_size": 64}},
     "train_gan.adversarial.patch_size is 64, smaller than the 81 px the critic takes"),
    ("train_gan", {"train_gan": {"device": "cuda:1", "distributed.nproc_per_node": 2}},
     "train_gan.device=cuda:1 names one GPU, but nproc_per_node=2"),
    ("data_prep", {"data_prep": {"train_sources": None, "eval_sets": None}},
     "data_prep: nothing to do: data_prep.train_sources and data_prep.eval_sets are both"),
    ("data_prep", {"data_prep": {"eval_sets.Div2K": {"builtin": "coffee"}}},
     "data_prep.train_sources.div2k and data_prep.eval_sets.Div2K have the same name"),
    ("evaluation", {"evaluation": {"runtime": "openvino", "device": "cuda"}},
     "evaluation.runtime=openvino runs on the CPU, but evaluation.device is cuda"),
    ("upscale", {"upscale": {"runtime": "openvino", "device": "mps"}},
     "upscale.runtime=openvino runs on the CPU, but upscale.device is mps"),
    ("data_prep train_gan", {"data_prep": {"min_size": 64}},
     "train_gan.pretrain.patch_size (96) is larger than the smallest tile data_prep stores"),
    ("data_prep evaluation", {"serving": {"registry.sets": "set14"}},
     "serving.registry.sets names ['set14'], which data_prep.eval_sets does not prepare"),
])
def test_every_rule_that_ties_two_settings_is_refused_by_the_hook(pipelines, changes, message):
    import importlib

    first, *more = (importlib.import_module(f"srgan_pipeline.pipelines.{name}").create_pipeline()
                    for name in pipelines.split())
    pipeline = sum(more, first)
    with pytest.raises(ValueError) as error:
        hook_run(pipeline, conf_base_run(**changes))
    assert str(error.value).splitlines()[0] == "Invalid parameters (nothing was run):"
    assert str(error.value).splitlines()[1].startswith(message)


def test_a_rule_between_two_blocks_waits_for_a_run_that_reads_both():
    from srgan_pipeline.pipelines import train_gan

    hook_run(train_gan.create_pipeline(), conf_base_run(data_prep={"min_size": 64}))


def test_offline_a_run_that_evaluates_stops_before_its_first_node_without_lpips_weights(
        offline_torch_hub):
    """conf/base scores LPIPS with the ImageNet AlexNet: a full run without it (offline) stops
    before data_prep, naming the file, not after training; the random opt-in does not stop."""
    from srgan_pipeline.pipelines import data_prep, evaluation

    pipeline = data_prep.create_pipeline() + evaluation.create_pipeline()
    with pytest.raises(RuntimeError, match=f"{offline_torch_hub}/checkpoints/alexnet-owt-7be5be79"):
        hook_run(pipeline, conf_base_run())
    with pytest.raises(RuntimeError, match=f"{offline_torch_hub}/pyiqa/niqe_modelparameters.mat"):
        hook_run(pipeline, conf_base_run(evaluation={"lpips.weights": "random"}))
    hook_run(pipeline, conf_base_run(evaluation={"lpips.weights": "random", "niqe": None}))


def test_crops_larger_than_the_smallest_tile_stop_the_run_before_data_prep_starts(fresh):
    output = kedro_run_fails(fresh, "--pipelines=data_prep,train_gan",
                             f"--params={TINY_TRAINING},data_prep.min_size=64")
    assert ("train_gan.adversarial.patch_size (96) is larger than the smallest tile data_prep "
            "stores, 64 px (data_prep.min_size=64 keeps images of 64 px a side") in output
    assert "train_gan.pretrain.patch_size" not in output  # the quickstart's phase 1 crops 64 px
    assert files_under(fresh / "data") == []  # no node ran
    assert mlflow_run_ids(fresh) == []
    assert not files_under(fresh / "mlruns")


def test_misspelt_upscale_key_is_refused_and_nothing_is_upscaled(trained):
    # Compared with before: other tests may have upscaled in the shared quickstart project.
    written = [trained / "data" / "07_model_output", trained / "data" / "08_reporting"]
    before = [(p, p.stat().st_mtime_ns) for folder in written for p in files_under(folder)]
    runs = mlflow_run_ids(trained)
    output = kedro_run_fails(trained, "--pipeline=upscale", "--params=upscale.imput_dir=/x")
    assert mlflow_run_ids(trained) == runs
    assert ("upscale.imput_dir: unknown key; valid keys: device, precision, tile, runtime, "
            "input_dir, model, max_pixels") in output
    assert [(p, p.stat().st_mtime_ns) for folder in written for p in files_under(folder)] == before


def test_misspelt_evaluation_key_is_refused_before_scoring(trained):
    before, runs = files_under(trained / "data" / "08_reporting"), mlflow_run_ids(trained)
    output = kedro_run_fails(trained, "--pipeline=evaluation", "--params=evaluation.model=bicubic")
    assert mlflow_run_ids(trained) == runs
    from srgan_pipeline.params import EvaluationParams  # the list grows with the schema

    valid = "valid keys: " + ", ".join(EvaluationParams.model_fields)
    assert f"evaluation.model: unknown key; {valid}" in output
    assert files_under(trained / "data" / "08_reporting") == before


def test_misspelt_data_prep_keys_are_refused_before_anything_is_read(fresh):
    output = kedro_run_fails(
        fresh, "--pipeline=data_prep",
        "--params=data_prep.min_sise=50,data_prep.tile.size=96,data_prp.min_size=50")
    from srgan_pipeline.params import DataPrepParams  # the list grows with the schema

    valid = "valid keys: " + ", ".join(DataPrepParams.model_fields)
    assert f"data_prep.min_sise: unknown key; {valid}" in output
    assert f"data_prep.tile: unknown key; {valid}" in output
    assert "data_prp: unknown parameter block; valid blocks: scale, data_prep, " in output
    assert files_under(fresh / "data") == []


def test_tiles_size_zero_is_refused_before_any_image_is_decoded(fresh):
    output = kedro_run_fails(fresh, "--pipeline=data_prep", "--params=data_prep.tiles.size=0")
    assert files_under(fresh / "data") == []
    assert "data_prep.tiles.size: must be >= 1, got 0" in output


def test_bad_phase_two_setting_stops_data_prep_and_phase_one_from_starting(fresh):
    output = kedro_run_fails(fresh, "--pipelines=data_prep,train_gan",
                             f"--params={TINY_TRAINING},train_gan.adversarial.lr=-1")
    assert files_under(fresh / "data" / "02_intermediate") == []
    assert files_under(fresh / "data") == []
    assert mlflow_run_ids(fresh) == []
    assert not files_under(fresh / "mlruns")
    assert "train_gan.adversarial.lr: must be > 0, got -1" in output


def test_phase_two_only_setting_given_to_phase_one_is_refused(trained):
    models = trained / "data" / "06_models"
    before, runs = files_under(models), mlflow_run_ids(trained)
    assert runs  # the quickstart's own: a new one would be seen beside it
    output = kedro_run_fails(trained, "--pipeline=train_gan",
                             f"--params={TINY_TRAINING},train_gan.pretrain.n_critic=1")
    assert mlflow_run_ids(trained) == runs
    # The whole list of phase 1's keys, in the schema's order, and no critic key in it.
    valid = ", ".join(PretrainParams.model_fields)
    assert f"train_gan.pretrain.n_critic: unknown key; valid keys: {valid}" in output
    assert files_under(models) == before


def test_a_run_reads_back_its_own_output_not_a_newer_one_of_another_run(tmp_path):
    import time

    import torch
    from kedro.io import DataCatalog
    from kedro.io.core import Version
    from kedro.pipeline import Node, Pipeline

    from srgan_pipeline.datasets import TorchCheckpointDataset
    from srgan_pipeline.hooks import pin_own_outputs

    path = str(tmp_path / "generator_gan.pt")
    mine, theirs = "2026-01-01T00.00.00.000Z", "2026-01-01T00.00.01.000Z"
    catalog = DataCatalog({
        "generator_gan": TorchCheckpointDataset(filepath=path, version=Version(None, mine)),
        "summary": TorchCheckpointDataset(filepath=str(tmp_path / "input.pt"),
                                          version=Version(None, mine)),
    })
    pipeline = Pipeline([Node(lambda x: x, "summary", "generator_gan", name="train"),
                         Node(lambda x: None, "generator_gan", None, name="evaluate")])
    assert pin_own_outputs(pipeline, catalog) == ["generator_gan"]

    catalog.save("generator_gan", {"run": "mine"})
    time.sleep(0.01)
    TorchCheckpointDataset(filepath=path, version=Version(None, theirs)).save({"run": "theirs"})
    assert catalog.load("generator_gan")() == {"run": "mine"}
    # an input this run does not produce still resolves to the latest version
    TorchCheckpointDataset(filepath=str(tmp_path / "input.pt"),
                           version=Version(None, theirs)).save({"v": torch.ones(1)})
    assert catalog.load("summary")()["v"].item() == 1.0
