"""The registry after a tiny `kedro run`: both generators registered with the weights evaluation
scored, the alias on the best above bicubic (here none); a subset evaluation changes neither;
and the rules (one version per weights, alias only among comparable full-set scores above
bicubic) on a scratch store."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pytest
import torch
from conftest import copy_project, kedro_run, registry_client, scored_checkpoint
from PIL import Image

from srgan_pipeline.checkpoints import evaluated_weights, generator_from_checkpoint
from srgan_pipeline.inference import upscale_image
from srgan_pipeline.serving.registry import (
    beats_bicubic,
    load_model_checkpoint,
    register_version,
    set_champion,
)

MODEL = "srgan_pipeline_generator"


def _latest_json(folder):
    return json.loads(max(folder.iterdir()).joinpath(folder.name).read_text())


def test_kedro_run_registers_the_scored_generators_and_aliases_the_best(tiny_quickstart):
    workdir, stdout = tiny_quickstart
    client = registry_client(workdir)
    versions = client.search_model_versions(f"name = '{MODEL}'")
    assert sorted(v.tags["model"] for v in versions) == ["srgan", "srresnet"]
    summary = _latest_json(workdir / "data" / "08_reporting" / "evaluation_summary.json")
    scores = summary["skimage_heldout"]
    for version in versions:  # the score is the evaluation's, under the rule it names
        assert version.tags["score_rule"] == "mean psnr_y over skimage_heldout"
        assert version.tags["scored_images"] == "skimage_heldout=2/2"
        expected = scores[version.tags["model"]]["psnr_y"]
        assert float(version.tags["score"]) == pytest.approx(expected, abs=1e-6)
        assert float(version.tags["bicubic_score"]) == pytest.approx(
            scores["bicubic"]["psnr_y"], abs=1e-6)
    # the alias goes to the best version above bicubic, or nowhere: a few training steps end
    # below bicubic (here), and a generator worse than bicubic must not be served as the best
    fit = [v for v in versions if scores[v.tags["model"]]["psnr_y"] > scores["bicubic"]["psnr_y"]]
    best = max(fit, key=lambda v: float(v.tags["score"])) if fit else None
    aliases = client.get_registered_model(MODEL).aliases
    assert aliases == ({"champion": best.version} if best else {})
    report = _latest_json(workdir / "data" / "08_reporting" / "model_registry.json")
    if best:
        assert report["champion"]["version"] == int(best.version)
        assert report["champion"]["uri"] == f"models:/{MODEL}@champion"
    else:
        assert report["champion"] is None and "beats bicubic" in report["no_champion_because"]
    # the registered source is the model train_gan logged (one logged model per generator)
    run, = client.search_runs([client.get_experiment_by_name("srgan_pipeline").experiment_id])
    logged = client.search_logged_models(experiment_ids=[run.info.experiment_id])
    assert sorted(m.tags["model"] for m in logged) == ["srgan", "srresnet"]
    assert {v.source for v in versions} == {m.model_uri for m in logged}


def test_each_version_holds_the_weights_evaluation_scored(tiny_quickstart, monkeypatch):
    """Per registered version: its weights file equals the train_gan checkpoint of its model
    (the EMA weights where kept, as evaluation scores), and those weights, upscaled here, give
    the SR images evaluation saved while scoring; a swapped or stale registration fails."""
    workdir, _ = tiny_quickstart
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    samples, = (workdir / "data/07_model_output/evaluation_sr_samples").glob("*/*/skimage_heldout")
    lr_dir = workdir / "data/05_model_input/eval/skimage_heldout/LR_x4"
    try:
        for version in registry_client(workdir).search_model_versions(f"name = '{MODEL}'"):
            model = version.tags["model"]
            registered = load_model_checkpoint(f"models:/{MODEL}/{version.version}")
            scored = evaluated_weights(scored_checkpoint(workdir, model))
            assert registered["generator"].keys() == scored["generator"].keys()
            for key, tensor in scored["generator"].items():
                assert torch.equal(registered["generator"][key], tensor), (model, key)
            generator = generator_from_checkpoint(registered)
            for sample in sorted(samples.glob(f"*_{model}.png")):
                lr = Image.open(lr_dir / sample.name.replace(f"_{model}", ""))
                assert np.array_equal(np.asarray(upscale_image(generator, lr)),
                                      np.asarray(Image.open(sample))), sample.name
    finally:
        mlflow.set_tracking_uri(None)


def test_a_subset_evaluation_neither_overwrites_scores_nor_moves_the_alias(tiny_quickstart,
                                                                           tmp_path):
    """`evaluation.images_per_set=1` (quick screening) after the full evaluation: its scores
    are recorded beside the full-set ones, which stay, and @champion stays where it was."""
    workdir = copy_project(tiny_quickstart[0], tmp_path / "project")
    client = registry_client(workdir)
    before = {v.version: v.tags for v in client.search_model_versions(f"name = '{MODEL}'")}
    held = min(before, key=lambda v: float(before[v]["score"]))  # the worse one, set by hand
    client.set_registered_model_alias(MODEL, "champion", held)
    kedro_run(workdir, "--pipelines=evaluation", "--params=evaluation.images_per_set=1")
    after = {v.version: v.tags for v in client.search_model_versions(f"name = '{MODEL}'")}
    assert after.keys() == before.keys()
    for version, tags in after.items():
        for key in ("score", "score_rule", "bicubic_score", "scored_images", "scored_in_run"):
            assert tags[key] == before[version][key], (version, key)
        assert tags["subset_scored_images"] == "skimage_heldout=1/2"
        assert tags["subset_score"] != tags["score"]  # one image of two: another mean
    assert client.get_registered_model(MODEL).aliases == {"champion": held}
    report = _latest_json(workdir / "data" / "08_reporting" / "model_registry.json")
    assert "only full-set scores move @champion" in report["champion_unchanged_because"]


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
            "weights_sha256": digest, "score": str(score), "score_rule": score_rule,
            "bicubic_score": "19.0"})
    assert int(set_champion(client, "best", "champion", rule).version) == 2
    assert int(client.get_model_version_by_alias("best", "champion").version) == 2
    assert set_champion(client, "best", "champion", "mean ssim_y over a") is None


def test_on_a_lower_is_better_metric_the_lowest_score_below_bicubic_is_champion(client):
    rule = "mean lpips over a, lower is better"
    for digest, score in [("1", 0.30), ("2", 0.21), ("3", 0.25), ("4", 0.45)]:
        register_version(client, "perceptual", _source(f"p{digest}"), {
            "weights_sha256": digest, "score": str(score), "score_rule": rule,
            "bicubic_score": "0.40", "score_direction": "lower"})
    assert int(set_champion(client, "perceptual", "champion", rule, "lower").version) == 2
    assert not beats_bicubic(client.get_model_version("perceptual", "4"))  # 0.45 > bicubic


def test_a_version_below_bicubic_never_becomes_champion(client):
    rule = "mean psnr_y over a"
    for digest, score, bicubic in [("1", 30.6, "30.7"), ("2", 99.0, None), ("3", 30.7, "30.7")]:
        register_version(client, "below", _source(f"b{digest}"), {
            "weights_sha256": digest, "score": str(score), "score_rule": rule,
            **({"bicubic_score": bicubic} if bicubic else {})})
    # below, equal to, or not compared with bicubic: none qualifies, and an alias a user (or
    # an older release) left on one of them under this rule is taken away
    client.set_registered_model_alias("below", "champion", "1")
    assert set_champion(client, "below", "champion", rule) is None
    assert client.get_registered_model("below").aliases == {}
    # one that beats bicubic takes it
    register_version(client, "below", _source("b4"), {
        "weights_sha256": "4", "score": "30.8", "score_rule": rule, "bicubic_score": "30.7"})
    assert int(set_champion(client, "below", "champion", rule).version) == 4


def test_the_same_weights_scored_again_update_their_version(client):
    source = _source("m")
    first = register_version(client, "again", source, {"weights_sha256": "d", "score": "1.0",
                                                   "score_rule": "r"})
    again = register_version(client, "again", source, {"weights_sha256": "d", "score": "2.0",
                                                   "score_rule": "r"})
    assert again.version == first.version and again.tags["score"] == "2.0"
    assert len(client.search_model_versions("name = 'again'")) == 1


def test_scored_again_the_per_set_scores_are_replaced_as_a_whole(client):
    """A second evaluation on another set (or without LPIPS) leaves none of the first's per-set
    tags behind to pass for its own; subset tags, and other tags, are not touched."""
    source = _source("s")
    register_version(client, "sets", source, {
        "weights_sha256": "d", "score": "20.0", "psnr_y.a": "20.0", "lpips.a": "0.3",
        "lpips_weights": "alex/random", "subset_psnr_y.a": "21.0", "note": "kept"},
        scores_prefix="")
    again = register_version(client, "sets", source, {
        "weights_sha256": "d", "score": "22.0", "psnr_y.b": "22.0"}, scores_prefix="")
    assert {key: again.tags[key] for key in again.tags if key != "weights_sha256"} == {
        "score": "22.0", "psnr_y.b": "22.0", "subset_psnr_y.a": "21.0", "note": "kept"}


def test_scored_versions_read_each_version_s_per_set_scores_and_aliases(client):
    from srgan_pipeline.serving.registry import scored_versions, set_score_tag

    assert scored_versions(client, "nothing registered") == []
    rule = "mean psnr_y over a"
    register_version(client, "scored", _source("o"), {"weights_sha256": "1", "model": "srgan",
                                                      "score": "20.0", "score_rule": rule})
    register_version(client, "scored", _source("n"), {
        "weights_sha256": "2", "model": "srresnet", "score": "21.0", "score_rule": rule,
        set_score_tag("psnr_y", "a.b"): "21.0", set_score_tag("lpips", "a.b"): "0.25",
        set_score_tag("psnr_y", "a.b", "subset_"): "9.0", "lpips_weights": "alex/imagenet"})
    client.set_registered_model_alias("scored", "champion", "2")
    assert scored_versions(client, "scored") == [
        {"version": 1, "model": "srgan", "aliases": [], "score_rule": rule, "scores": {},
         "lpips_weights": None, "niqe_model": None},  # registered before per-set tags
        {"version": 2, "model": "srresnet", "aliases": ["champion"], "score_rule": rule,
         "scores": {"a.b": {"psnr_y": 21.0, "lpips": 0.25}}, "lpips_weights": "alex/imagenet",
         "niqe_model": None}]
