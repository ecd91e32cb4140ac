"""train_gan on the quickstart data with tiny models, run as a user runs it (`kedro run`)."""

import os
import re
import shutil
import subprocess
import sys

import mlflow
import numpy as np
import pytest
import torch
import yaml
from conftest import (
    PROJECT_ROOT,
    QUIET_ENV,
    conf_parameters,
    copy_project,
    kedro_project,
    kedro_run,
    latest_checkpoint,
    new_version,
    tiny_training,
    versions,
)
from PIL import Image

from srgan_pipeline.checkpoints import build_generator, generator_from_checkpoint
from srgan_pipeline.inference import upscale

TINY = tiny_training({"pretrain.iterations": 6, "pretrain.log_every": 2,
                     "pretrain.checkpoint_every": 3, "adversarial.n_critic": 2,
                     "adversarial.log_every": 1, "adversarial.checkpoint_every": 1,
                     "adversarial.perceptual_weight": 0.1})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("train_gan")
    with pytest.MonkeyPatch.context() as monkeypatch:
        kedro_project(workdir, monkeypatch)
    kedro_run(workdir, "--pipelines=data_prep,train_gan", f"--params={TINY}")
    return workdir


def trainable(state):
    """The learned weights of a generator state dict (BatchNorm running statistics also move
    without an optimiser step)."""
    return {k: v.float() for k, v in state.items()
            if k.endswith((".weight", ".bias")) and "running" not in k}


def test_checkpoints_are_versioned_and_complete(trained):
    pretrained, gan, critic = (latest_checkpoint(trained, n) for n in ("generator_pretrained",
                                                             "generator_gan", "critic"))
    assert (pretrained["phase"], pretrained["step"]) == ("pretrain", 6)
    assert (gan["phase"], gan["step"]) == ("adversarial", 2)
    assert gan["generator_config"]["channels"] == 8
    assert critic["critic"] and critic["optimizer_c"] and critic["critic_config"]
    # phase 2 started from phase 1's generator: 2 Adam steps at lr 1e-4 move each weight by
    # about 2e-4, while any other start (a fresh init of the same architecture) is far away
    assert pretrained["generator"].keys() == gan["generator"].keys()
    start, end = trainable(pretrained["generator"]), trainable(gan["generator"])
    moved = max((end[k] - start[k]).abs().max().item() for k in start)
    assert 0 < moved < 2e-3, moved
    fresh = trainable(build_generator(pretrained["generator_config"], seed=0).state_dict())
    assert max((end[k] - fresh[k]).abs().max().item() for k in start) > 100 * moved


def test_the_mlflow_run_has_parameters_curves_tags_and_checkpoints(trained):
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{trained / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("srgan_pipeline")
    run, = client.search_runs([experiment.experiment_id])
    assert run.data.params["train_gan.pretrain.iterations"] == "6"
    assert run.data.tags["pretrain.perceptual_weights"] == "random"
    assert run.data.tags["adversarial.stopped_because"] == "iterations"
    # a window mean every log_every steps: 6 / 2 in phase 1, 2 / 1 in phase 2
    for metric, steps in (("pretrain/pixel", [2, 4, 6]), ("critic/gradient_penalty", [1, 2]),
                          ("critic/wasserstein_distance", [1, 2]), ("gan/adversarial", [1, 2])):
        history = client.get_metric_history(run.info.run_id, metric)
        assert sorted(m.step for m in history) == steps, metric
    assert len(client.get_metric_history(run.info.run_id, "time/iters_per_sec")) == 3 + 2
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")}
    assert artifacts == {"checkpoints/pretrain.pt", "checkpoints/adversarial.pt"}


# Phase 2 alone with a learning rate too small to move an fp32 weight: the GAN generator it
# saves holds exactly the weights it started from.
PHASE_TWO_ONLY = ("--params=train_gan.num_workers=0,train_gan.adversarial.iterations=1,"
                  "train_gan.adversarial.batch_size=2,train_gan.adversarial.n_critic=1,"
                  "train_gan.adversarial.lr=1e-12")


def checkpoint(workdir, name, version):
    return torch.load(workdir / "data" / "06_models" / f"{name}.pt" / version / f"{name}.pt",
                      weights_only=True)


def distance(a, b):
    a, b = trainable(a["generator"]), trainable(b["generator"])
    return max((a[k] - b[k]).abs().max().item() for k in a)


@pytest.fixture(scope="module")
def two_versions(trained, tmp_path_factory):
    """A copy of the trained project with a second, different, pretrained and GAN generator
    (another seed): {"project", "pretrained": [old, new], "gan": [old, new]} versions."""
    workdir = copy_project(trained, tmp_path_factory.mktemp("two_versions"))
    models = workdir / "data" / "06_models"
    old = {name: versions(models / f"{name}.pt") for name in ("generator_pretrained",
                                                               "generator_gan")}
    kedro_run(workdir, "--pipelines=train_gan", f"--params={TINY},train_gan.pretrain.seed=7,"
              "train_gan.adversarial.seed=7")
    found = {"project": workdir}
    for key, name in (("pretrained", "generator_pretrained"), ("gan", "generator_gan")):
        first, = old[name]
        found[key] = [first, new_version(models / f"{name}.pt", old[name])]
    pretrained = [checkpoint(workdir, "generator_pretrained", v) for v in found["pretrained"]]
    assert distance(*pretrained) > 1e-2  # the pins below can tell them apart
    return found


def run_phase_two(project, tmp_path, *args):
    """Phase 2 alone in a copy of ``project``; the GAN generator it saved, and the copy."""
    workdir = copy_project(project, tmp_path / "project")
    gan_dir = workdir / "data" / "06_models" / "generator_gan.pt"
    pretrained_before = versions(workdir / "data" / "06_models" / "generator_pretrained.pt")
    before = versions(gan_dir)
    kedro_run(workdir, "--pipelines=train_gan", "--from-nodes=train_adversarial",
              PHASE_TWO_ONLY, *args)
    gan = checkpoint(workdir, "generator_gan", new_version(gan_dir, before))
    # phase 1 did not run again
    assert versions(workdir / "data" / "06_models" / "generator_pretrained.pt") == \
        pretrained_before
    return gan, workdir


def test_phase_two_alone_starts_from_the_latest_pretrained_generator(two_versions, tmp_path):
    gan, workdir = run_phase_two(two_versions["project"], tmp_path)
    old, new = (checkpoint(workdir, "generator_pretrained", v)
                for v in two_versions["pretrained"])
    assert gan["phase"] == "adversarial" and gan["step"] == 1
    assert distance(gan, new) < 1e-6
    assert distance(gan, old) > 1e-2


def test_phase_two_from_a_pinned_pretrained_generator(two_versions, tmp_path):
    old_version = two_versions["pretrained"][0]
    gan, workdir = run_phase_two(two_versions["project"], tmp_path,
                                 f"--load-versions=generator_pretrained:{old_version}")
    old, new = (checkpoint(workdir, "generator_pretrained", v)
                for v in two_versions["pretrained"])
    assert distance(gan, old) < 1e-6
    assert distance(gan, new) > 1e-2


def test_evaluation_scores_a_pinned_gan_generator(two_versions, tmp_path):
    """`kedro run --pipelines=evaluation --load-versions=generator_gan:<v>`: the SR output it
    saves is that checkpoint's upscaling, not the latest one's."""
    workdir = copy_project(two_versions["project"], tmp_path / "project")
    samples_dir = workdir / "data" / "07_model_output" / "evaluation_sr_samples"
    before = versions(samples_dir)
    pinned, latest_version = two_versions["gan"]
    kedro_run(workdir, "--pipelines=evaluation", f"--load-versions=generator_gan:{pinned}",
              "--params=evaluation.models=bicubic srgan")
    sample = samples_dir / new_version(samples_dir, before) / "evaluation_sr_samples"
    saved = np.asarray(Image.open(sample / "skimage_heldout" / "chelsea_srgan.png"))
    lr = np.asarray(Image.open(
        workdir / "data/05_model_input/eval/skimage_heldout/LR_x4/chelsea.png"))
    expected = {version: upscale(generator_from_checkpoint(
        checkpoint(workdir, "generator_gan", version)), lr, tile=256)
        for version in (pinned, latest_version)}
    # tiled and untiled inference agree to within a grey level (inference.upscale)
    assert np.abs(saved.astype(int) - expected[pinned]).max() <= 1
    assert np.abs(saved.astype(int) - expected[latest_version]).mean() > 2


def test_a_truncated_store_stops_training_naming_the_file(trained, tmp_path):
    shutil.copytree(trained / "conf", tmp_path / "conf")
    for name in ("pyproject.toml", ".telemetry"):
        shutil.copy(trained / name, tmp_path / name)
    (tmp_path / "src").mkdir()
    store = tmp_path / "data" / "03_primary" / "train_store"
    shutil.copytree(trained / "data" / "03_primary" / "train_store", store)
    (store / "lr.npy").write_bytes((store / "lr.npy").read_bytes()[:-1000])
    done = subprocess.run([sys.executable, "-m", "kedro", "run", "--env=quickstart",
                           "--pipelines=train_gan",
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
    settings = conf_parameters("quickstart")["train_gan"]
    settings |= {"device": "cpu", "checkpoint_dir": str(tmp_path / "in_progress")}
    with pytest.raises(ValueError, match=r"written for x4, but scale is 2: re-run data_prep"):
        pretrain_generator(TrainingStore(tmp_path / "train_store"), 2, settings)
