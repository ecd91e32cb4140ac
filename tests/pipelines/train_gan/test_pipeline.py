"""train_gan through Kedro's session on the quickstart data, with tiny models."""

import subprocess

import mlflow
import pytest
import torch
from conftest import kedro_project
from kedro.framework.session import KedroSession

TINY = {
    "train_gan": {
        "num_workers": 0,
        "generator": {"channels": 8, "num_blocks": 1},
        "critic": {"base_channels": 8},
        "pretrain": {"iterations": 6, "batch_size": 2, "log_every": 2, "checkpoint_every": 3},
        "adversarial": {"iterations": 2, "batch_size": 2, "n_critic": 2, "log_every": 1,
                        "checkpoint_every": 1, "perceptual_weight": 0.1},
    }
}


def run(workdir, monkeypatch, pipelines, params=TINY):
    project = kedro_project(workdir, monkeypatch)
    with KedroSession.create(project_path=project, env="quickstart",
                             runtime_params=params) as session:
        return session.run(pipeline_names=pipelines)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("train_gan")
    with pytest.MonkeyPatch.context() as monkeypatch:
        run(workdir, monkeypatch, ["data_prep"])
        run(workdir, monkeypatch, ["train_gan"])
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
    # The documented command, in a new process as a user runs it (kedro-mlflow's hook keeps
    # per-process state, so a second session in this process would reuse the first's run).
    command = ["kedro", "run", "--env=quickstart", "--pipeline=train_gan",
               "--from-nodes=train_adversarial",
               "--params=train_gan.num_workers=0,train_gan.adversarial.iterations=1,"
               "train_gan.adversarial.batch_size=2,train_gan.adversarial.n_critic=1"]
    done = subprocess.run(command, cwd=trained, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    models = trained / "data" / "06_models"
    assert len(list((models / "generator_gan.pt").iterdir())) == 2
    assert len(list((models / "generator_pretrained.pt").iterdir())) == 1  # not retrained
