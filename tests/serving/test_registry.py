"""The registry after a tiny `kedro run`: both generators registered, the alias on the best;
and the rules (one version per weights, alias only among comparable scores) on a scratch store."""

from __future__ import annotations

import json

import mlflow
import pytest

from srgan_pipeline.serving.registry import register_version, set_champion

MODEL = "srgan_pipeline_generator"


def _latest_json(folder):
    return json.loads(max(folder.iterdir()).joinpath(folder.name).read_text())


def test_kedro_run_registers_the_scored_generators_and_aliases_the_best(tiny_quickstart):
    workdir, stdout = tiny_quickstart
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    versions = client.search_model_versions(f"name = '{MODEL}'")
    assert sorted(v.tags["model"] for v in versions) == ["srgan", "srresnet"]
    summary = _latest_json(workdir / "data" / "08_reporting" / "evaluation_summary.json")
    for version in versions:  # the score is the evaluation's, under the rule it names
        assert version.tags["score_rule"] == "mean psnr_y over skimage_heldout"
        expected = summary["skimage_heldout"][version.tags["model"]]["psnr_y"]
        assert float(version.tags["score"]) == pytest.approx(expected, abs=1e-6)
    best = max(versions, key=lambda v: float(v.tags["score"]))
    champion = client.get_model_version_by_alias(MODEL, "champion")
    assert int(champion.version) == int(best.version)
    # the registered source is the model train_gan logged (one logged model per generator)
    run, = client.search_runs([client.get_experiment_by_name("srgan_pipeline").experiment_id])
    logged = client.search_logged_models(experiment_ids=[run.info.experiment_id])
    assert sorted(m.tags["model"] for m in logged) == ["srgan", "srresnet"]
    assert {v.source for v in versions} == {m.model_uri for m in logged}
    report = _latest_json(workdir / "data" / "08_reporting" / "model_registry.json")
    assert report["champion"]["version"] == int(best.version)
    assert report["champion"]["uri"] == f"models:/{MODEL}@champion"


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    """A scratch store with a run open (a new sqlite store takes seconds to create: one)."""
    tmp_path = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.create_experiment("x", artifact_location=str(tmp_path / "mlruns"))
    try:
        with mlflow.start_run(experiment_id=experiment):
            yield mlflow.MlflowClient(tracking_uri=uri)
    finally:
        mlflow.set_tracking_uri(None)


def _source(name: str) -> str:
    """A stand-in model to register (the registry does not look inside it)."""
    info = mlflow.pyfunc.log_model(name=name, python_model=_Nothing(), pip_requirements=[])
    return info.model_uri


class _Nothing(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input


def test_the_alias_goes_to_the_best_score_under_the_same_rule(client):
    rule, other = "mean psnr_y over a", "mean psnr_y over b"
    for digest, score, score_rule in [("1", 20.0, rule), ("2", 22.5, rule), ("3", 99.0, other),
                                      ("4", 21.0, rule)]:
        register_version(client, "best", _source(f"m{digest}"), {
            "weights_sha256": digest, "score": str(score), "score_rule": score_rule})
    assert int(set_champion(client, "best", "champion", rule).version) == 2
    assert int(client.get_model_version_by_alias("best", "champion").version) == 2
    assert set_champion(client, "best", "champion", "mean ssim_y over a") is None


def test_the_same_weights_scored_again_update_their_version(client):
    source = _source("m")
    first = register_version(client, "again", source, {"weights_sha256": "d", "score": "1.0",
                                                   "score_rule": "r"})
    again = register_version(client, "again", source, {"weights_sha256": "d", "score": "2.0",
                                                   "score_rule": "r"})
    assert again.version == first.version and again.tags["score"] == "2.0"
    assert len(client.search_model_versions("name = 'again'")) == 1
