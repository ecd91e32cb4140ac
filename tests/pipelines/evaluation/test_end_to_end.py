"""The quickstart end to end (data_prep, tiny train_gan, evaluation), then upscale, as a user
runs them: `kedro run` in new processes."""

import json

import mlflow
import numpy as np
import pytest
from conftest import (
    REGISTERED_MODEL,
    copy_project,
    kedro_project,
    kedro_run,
    kedro_run_fails,
    latest_version,
    new_version,
    registry_client,
    versions,
    write_image,
)
from PIL import Image
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio

from srgan_pipeline.imaging import imresize


@pytest.fixture
def quickstart(tiny_quickstart):
    return tiny_quickstart


def bicubic_psnr_y(workdir, eval_set="skimage_heldout", scale=4):
    """The bicubic row's Y-PSNR computed here from the evaluation pairs on disk: MATLAB bicubic
    (`imresize`, equal to MATLAB's LR files on Urban100: tests/test_imaging.py), then
    scikit-image's BT.601 Y and PSNR, not the project's metric code."""
    pairs = workdir / "data" / "05_model_input" / "eval" / eval_set
    figures = []
    for hr_path in sorted((pairs / "HR").glob("*.png")):
        hr = np.asarray(Image.open(hr_path).convert("RGB"))
        lr = np.asarray(Image.open(pairs / "LR_x4" / hr_path.name).convert("RGB"))
        sr = imresize(lr, scale)
        y_sr, y_hr = (rgb2ycbcr(a)[scale:-scale, scale:-scale, 0] for a in (sr, hr))
        figures.append(peak_signal_noise_ratio(y_hr, y_sr, data_range=255))
    return float(np.mean(figures)), len(figures)


def test_the_summary_table_is_printed_and_saved(quickstart):
    workdir, stdout = quickstart
    assert "| skimage_heldout | srgan |" in stdout
    reporting = workdir / "data" / "08_reporting"
    summary = json.loads(latest_version(reporting / "evaluation_summary.json").read_text())
    assert sorted(summary["skimage_heldout"]) == ["bicubic", "srgan", "srresnet"]
    expected, images = bicubic_psnr_y(workdir)
    assert summary["skimage_heldout"]["bicubic"]["images"] == images == 2
    assert summary["skimage_heldout"]["bicubic"]["psnr_y"] == pytest.approx(expected, abs=1e-6)
    table = latest_version(reporting / "evaluation_summary.md").read_text()
    assert table.startswith("| set | model |") and table.count("\n") == 2 + 3
    # the quickstart's opt-in: a random LPIPS backbone, named where the numbers are
    assert "| LPIPS-alex, RANDOM backbone: not LPIPS (lower is better) |" in table
    assert summary["skimage_heldout"]["srgan"]["lpips_weights"] == "alex/random"
    per_image = latest_version(reporting / "evaluation_per_image.csv").read_text().splitlines()
    assert per_image[0] == ("set,image,model,height,width,psnr_y,ssim_y,psnr_rgb,lpips,"
                            "lpips_weights,precision")
    # the quickstart's evaluation.precision is fp32 (published tables); bicubic is float64
    assert {model: row["precision"] for model, row in summary["skimage_heldout"].items()} == {
        "bicubic": "fp64", "srresnet": "fp32", "srgan": "fp32"}
    assert len(per_image) == 1 + 2 * 3


def test_figures_and_sr_outputs_are_versioned_images(quickstart):
    workdir, _ = quickstart
    figures = sorted(latest_version(workdir / "data" / "08_reporting" / "evaluation_comparisons")
                     .rglob("*.png"))
    assert [f.name for f in figures] == ["chelsea.png", "rocket.png"]
    figure = np.asarray(Image.open(figures[0]))
    assert figure.shape[1] > 4 * figure.shape[0]  # five panels side by side
    samples = latest_version(workdir / "data" / "07_model_output" / "evaluation_sr_samples")
    assert len(list(samples.rglob("*.png"))) == 2 * 3
    hr = Image.open(workdir / "data/05_model_input/eval/skimage_heldout/HR/chelsea.png")
    assert Image.open(samples / "skimage_heldout" / "chelsea_srgan.png").size == hr.size


def test_the_mlflow_run_holds_losses_and_evaluation_metrics(quickstart):
    workdir, _ = quickstart
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    run, = client.search_runs([client.get_experiment_by_name("srgan_pipeline").experiment_id])
    metrics = run.data.metrics
    summary = json.loads(latest_version(workdir / "data" / "08_reporting" /
                                        "evaluation_summary.json").read_text())
    for model in ("bicubic", "srresnet", "srgan"):  # MLflow holds the figures of the table
        for metric in ("psnr_y", "ssim_y", "lpips"):
            assert metrics[f"skimage_heldout/{model}/{metric}"] == pytest.approx(
                summary["skimage_heldout"][model][metric], abs=1e-9), (model, metric)
    assert metrics["skimage_heldout/bicubic/psnr_y"] == pytest.approx(
        bicubic_psnr_y(workdir)[0], abs=1e-6)
    assert "pretrain/pixel" in metrics and "critic/gradient_penalty" in metrics
    figures = {a.path for a in client.list_artifacts(run.info.run_id,
                                                     "comparisons/skimage_heldout")}
    assert figures == {"comparisons/skimage_heldout/chelsea.png",
                       "comparisons/skimage_heldout/rocket.png"}
    # what LPIPS was computed with, and the perception-distortion figure
    assert run.data.tags["evaluation.lpips_weights"] == "alex/random"
    assert "perception_distortion.png" in {a.path for a in client.list_artifacts(run.info.run_id)}
    plane = Image.open(latest_version(workdir / "data" / "08_reporting" /
                                      "evaluation_perception_distortion.png"))
    assert plane.mode == "RGB" and plane.size == (440, 380)


def test_upscale_keeps_names_skips_a_corrupt_file_and_handles_alpha(quickstart, tmp_path):
    workdir = copy_project(quickstart[0], tmp_path / "project")  # the run adds an MLflow run
    inputs = tmp_path / "mine"
    write_image(inputs / "photo.png", (37, 23))
    Image.fromarray(np.full((10, 12, 4), 200, np.uint8), "RGBA").save(inputs / "logo.png")
    (inputs / "broken.jpg").write_bytes(b"not a jpeg")
    kedro_run(workdir, "--pipeline=upscale", f"--params=upscale.input_dir={inputs}")
    out = workdir / "data" / "07_model_output" / "upscaled"
    assert Image.open(out / "photo.png").size == (37 * 4, 23 * 4)
    logo = Image.open(out / "logo.png")
    assert logo.mode == "RGBA" and logo.size == (48, 40)
    report = json.loads((workdir / "data" / "08_reporting" / "upscale_report.json").read_text())
    assert [s["file"] for s in report["skipped"]] == ["broken.jpg"]


def test_bicubic_alone_needs_no_checkpoint(tmp_path, monkeypatch):
    kedro_project(tmp_path, monkeypatch)
    stdout = kedro_run(tmp_path, "--pipelines=data_prep,evaluation",
                       "--params=evaluation.models=bicubic")
    assert "| skimage_heldout | bicubic |" in stdout
    assert not (tmp_path / "data" / "06_models" / "generator_gan.pt").exists()


def test_an_eval_set_added_with_params_is_scored_with_srresnet(quickstart, tmp_path,
                                                               image_folder):
    """docs/evaluation.md: `kedro run --pipelines=data_prep,evaluation
    --params="data_prep.eval_sets.<set>.path=..."` with `"evaluation.models=bicubic srresnet"` (the
    pretrained generator of the tiny quickstart)."""
    workdir = copy_project(quickstart[0], tmp_path / "project")
    reporting = workdir / "data" / "08_reporting" / "evaluation_summary.json"
    before = versions(reporting)
    stdout = kedro_run(workdir, "--pipelines=data_prep,evaluation",
                       f"--params=data_prep.eval_sets.mine.path={image_folder},"
                       "evaluation.models=bicubic srresnet")
    summary = json.loads((reporting / new_version(reporting, before) / reporting.name)
                         .read_text())
    assert sorted(summary) == ["mine", "skimage_heldout"]
    assert sorted(summary["mine"]) == ["bicubic", "srresnet"]
    assert summary["mine"]["srresnet"]["images"] == 3  # a, b, c; broken and tiny skipped
    assert "| mine | srresnet |" in stdout and "| mine | bicubic |" in stdout


def test_a_scale_other_than_the_checkpoints_is_refused_before_scoring(quickstart, tmp_path):
    """`scale=2` with x4 checkpoints: refused up front, naming both scales, nothing scored
    (no bicubic row first) and no evaluation output written."""
    workdir = copy_project(quickstart[0], tmp_path / "project")
    reporting = workdir / "data" / "08_reporting" / "evaluation_summary.json"
    before = versions(reporting)
    output = kedro_run_fails(workdir, "--pipelines=evaluation", "--params=scale=2")
    assert "scale=2 (params:scale) but the srresnet checkpoint upscales x4" in output
    assert "the srgan checkpoint upscales x4" in output and "--params=scale=4" in output
    assert "Scored" not in output and versions(reporting) == before


def test_registered_versions_carry_per_set_scores_and_are_points_of_the_next_figure(
        quickstart, tmp_path):
    """The quickstart's evaluation tagged each version with its per-set scores and drew its
    generators with their version numbers; a second evaluation (bicubic alone) draws those
    versions beside bicubic, and counts one stripped of its per-set tags (as one registered
    before they were written) instead of drawing it."""
    workdir = copy_project(quickstart[0], tmp_path / "project")
    reporting = workdir / "data" / "08_reporting"
    summary = json.loads(latest_version(reporting / "evaluation_summary.json").read_text())
    client = registry_client(workdir)
    registered = {v.tags["model"]: v for v in
                  client.search_model_versions(f"name = '{REGISTERED_MODEL}'")}
    for model, version in registered.items():
        scores = summary["skimage_heldout"][model]
        for metric in ("psnr_y", "ssim_y", "psnr_rgb", "lpips"):
            assert float(version.tags[f"{metric}.skimage_heldout"]) == pytest.approx(
                scores[metric], abs=1e-6), (model, metric)
        assert version.tags["lpips_weights"] == "alex/random"  # the quickstart's opt-in
    first = json.loads(latest_version(reporting / "evaluation_perception_distortion.json")
                       .read_text())["sets"]["skimage_heldout"]
    assert sorted(p["label"] for p in first["points"]) == sorted(
        ["bicubic", *(f"{m} v{v.version}" for m, v in registered.items())])

    stripped = registered["srgan"]
    for key in [k for k in stripped.tags if k.endswith(".skimage_heldout")]:
        client.delete_model_version_tag(REGISTERED_MODEL, stripped.version, key)
    figures = reporting / "evaluation_perception_distortion.json"
    before = versions(figures)
    kedro_run(workdir, "--pipelines=evaluation", "--params=evaluation.models=bicubic")
    points = json.loads((figures / new_version(figures, before) / figures.name).read_text())
    panel = points["sets"]["skimage_heldout"]
    srresnet = registered["srresnet"]
    assert [(p["label"], p["source"]) for p in panel["points"]] == [
        ("bicubic", "evaluation"), (f"srresnet v{srresnet.version}", "registry")]
    assert panel["points"][1]["psnr_y"] == pytest.approx(
        summary["skimage_heldout"]["srresnet"]["psnr_y"], abs=1e-6)
    assert panel["left_out"] == {"no per-set scores (registered before they were tagged)": 1}
    aliases = client.get_registered_model(REGISTERED_MODEL).aliases
    assert points["registry"]["champion"] == (int(aliases["champion"]) if aliases else None)
    assert points["registry"]["score_rule"] == "mean psnr_y over skimage_heldout"
    run = max(client.search_runs([client.get_experiment_by_name("srgan_pipeline")
                                  .experiment_id]), key=lambda r: r.info.start_time)
    assert {"perception_distortion.png", "perception_distortion.json"} <= {
        a.path for a in client.list_artifacts(run.info.run_id)}
