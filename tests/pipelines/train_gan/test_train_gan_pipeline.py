"""train_gan on the quickstart data with tiny models, run as a user runs it (`kedro run`)."""

import os
import re
import shutil
import subprocess

import mlflow
import pytest
import torch
import yaml
from conftest import PROJECT_ROOT, QUIET_ENV, kedro_project, kedro_run

TINY = ",".join([
    "train_gan.num_workers=0", "train_gan.generator.channels=8", "train_gan.generator.num_blocks=1",
    "train_gan.critic.base_channels=8",
    "train_gan.pretrain.iterations=6", "train_gan.pretrain.batch_size=2",
    "train_gan.pretrain.log_every=2", "train_gan.pretrain.checkpoint_every=3",
    "train_gan.adversarial.iterations=2", "train_gan.adversarial.batch_size=2",
    "train_gan.adversarial.n_critic=2", "train_gan.adversarial.log_every=1",
    "train_gan.adversarial.checkpoint_every=1", "train_gan.adversarial.perceptual_weight=0.1",
])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("train_gan")
    with pytest.MonkeyPatch.context() as monkeypatch:
        kedro_project(workdir, monkeypatch)
    kedro_run(workdir, "--pipelines=data_prep,train_gan", f"--params={TINY}")
    return workdir


def latest(workdir, name):
    path, = (workdir / "data" / "06_models" / f"{name}.pt").glob("*/*.pt")
    return torch.load(path, weights_only=True)


def test_checkpoints_are_versioned_and_complete(trained):
    pretrained, gan, critic = (latest(trained, n) for n in ("generator_pretrained",
                                                             "generator_gan", "critic"))
    assert (pretrained["phase"], pretrained["step"]) == ("pretrain", 6)
    assert (gan["phase"], gan["step"]) == ("adversarial", 2)
    assert gan["generator_config"]["channels"] == 8
    assert critic["critic"] and critic["optimizer_c"] and critic["critic_config"]
    # phase 2 started from phase 1's generator: weights moved, but from those
    assert pretrained["generator"].keys() == gan["generator"].keys()


def test_the_mlflow_run_has_parameters_curves_tags_and_checkpoints(trained):
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{trained / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("srgan_pipeline")
    run, = client.search_runs([experiment.experiment_id])
    assert run.data.params["train_gan.pretrain.iterations"] == "6"
    assert run.data.tags["pretrain.perceptual_weights"] == "random"
    assert run.data.tags["adversarial.stopped_because"] == "iterations"
    for metric, points in (("pretrain/pixel", 3), ("critic/gradient_penalty", 2),
                           ("critic/wasserstein_distance", 2), ("gan/adversarial", 2),
                           ("time/iters_per_sec", 3 + 2)):
        history = client.get_metric_history(run.info.run_id, metric)
        assert len(history) >= min(points, 2), metric
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")}
    assert artifacts == {"checkpoints/pretrain.pt", "checkpoints/adversarial.pt"}


def test_phase_two_alone_from_the_existing_pretrained_checkpoint(trained):
    kedro_run(trained, "--pipelines=train_gan", "--from-nodes=train_adversarial",
              "--params=train_gan.num_workers=0,train_gan.adversarial.iterations=1,"
              "train_gan.adversarial.batch_size=2,train_gan.adversarial.n_critic=1")
    models = trained / "data" / "06_models"
    assert len(list((models / "generator_gan.pt").iterdir())) == 2
    assert len(list((models / "generator_pretrained.pt").iterdir())) == 1  # not retrained


def test_a_truncated_store_stops_training_naming_the_file(trained, tmp_path):
    shutil.copytree(trained / "conf", tmp_path / "conf")
    for name in ("pyproject.toml", ".telemetry"):
        shutil.copy(trained / name, tmp_path / name)
    (tmp_path / "src").mkdir()
    store = tmp_path / "data" / "03_primary" / "train_store"
    shutil.copytree(trained / "data" / "03_primary" / "train_store", store)
    (store / "lr.npy").write_bytes((store / "lr.npy").read_bytes()[:-1000])
    done = subprocess.run(["kedro", "run", "--env=quickstart", "--pipelines=train_gan",
                           f"--params={TINY}"], cwd=tmp_path,
                          env={**os.environ, **QUIET_ENV, "COLUMNS": "1000"},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode != 0
    output = " ".join((done.stdout + done.stderr).split())  # unwrap rich's console lines
    assert f"{store / 'lr.npy'} is" in output and "re-run data_prep" in output


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("num_workers", -1, "train_gan.num_workers: must be >= 0, got -1"),
    ("cache_tiles", True, "train_gan.cache_tiles: unknown key"),  # gone with the PNG tiles
    ("tile_cache", True, "train_gan.tile_cache: unknown key; valid keys: device, num_workers, "),
])
def test_settings_are_validated_with_their_names(name, value, expected):
    from srgan_pipeline.pipelines.train_gan.nodes import pretrain_generator

    settings = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_train_gan.yml").read_text())
    settings = settings["train_gan"] | {name: value}
    with pytest.raises(ValueError, match=re.escape(expected)):
        pretrain_generator(None, 4, settings)


def test_a_store_of_another_scale_is_refused(tmp_path):
    from functools import partial

    import numpy as np

    from srgan_pipeline.pipelines.train_gan.nodes import pretrain_generator
    from srgan_pipeline.training_store import StoreContent, TrainingStore, write_store

    image = partial(np.zeros, (96, 96, 3), np.uint8)
    write_store(tmp_path / "train_store", StoreContent({"s/a": (image, (96, 96))}, 4, 96, 48))
    settings = yaml.safe_load((PROJECT_ROOT / "conf/quickstart/parameters_train_gan.yml")
                              .read_text())["train_gan"]
    settings |= {"device": "cpu", "checkpoint_dir": str(tmp_path / "in_progress")}
    with pytest.raises(ValueError, match=r"written for x4, but scale is 2: re-run data_prep"):
        pretrain_generator(TrainingStore(tmp_path / "train_store"), 2, settings)
