"""docs/training.md "Resume, run phase 2 alone, budgets" and "VGG19 weights": the documented `kedro
run` commands of train_gan, in new processes on a copy of the tiny quickstart (its tiles)."""

import re
import shutil
from pathlib import Path

import mlflow
import pytest
import torch
from conftest import (
    TINY_TRAINING,
    conf_parameters,
    copy_project,
    kedro,
    kedro_run,
    new_version,
    offline_env,
    versions,
)
from torchvision.models import vgg

from srgan_pipeline.devices import cpu_has_fast_bf16

MODELS = ("data", "06_models")


def project(tiny_quickstart, tmp_path):
    return copy_project(tiny_quickstart[0], tmp_path / "project")


def runs(workdir):
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("srgan_pipeline")
    return {run.info.run_id: run for run in client.search_runs([experiment.experiment_id])}


def new_run(workdir, before):
    added, = set(runs(workdir)) - set(before)
    return runs(workdir)[added]


def tiny(**overrides):
    """TINY_TRAINING with some settings replaced or added: `--params=...`."""
    params = dict(item.split("=", 1) for item in TINY_TRAINING.split(","))
    params.update({f"train_gan.{key}": str(value) for key, value in overrides.items()})
    return "--params=" + ",".join(f"{k}={v}" for k, v in params.items())


def squashed(done):
    """stdout and stderr without any whitespace: rich wraps long lines, paths included."""
    return re.sub(r"\s+", "", done.stdout + done.stderr)


def test_max_minutes_stops_phase_one_and_records_why(tiny_quickstart, tmp_path):
    workdir = project(tiny_quickstart, tmp_path)
    pretrained_dir = workdir.joinpath(*MODELS, "generator_pretrained.pt")
    before, runs_before = versions(pretrained_dir), runs(workdir)
    kedro_run(workdir, "--pipelines=train_gan",
              tiny(**{"pretrain.iterations": 100_000, "pretrain.max_minutes": 0.001}))
    version = new_version(pretrained_dir, before)
    state = torch.load(pretrained_dir / version / "generator_pretrained.pt", weights_only=True)
    assert state["stopped_because"] == "max_minutes"
    # the quickstart's floor under its budget: a spent budget still trains that many steps
    assert state["step"] == conf_parameters("quickstart")["train_gan"]["pretrain"][
        "min_iterations"] == 300
    tags = new_run(workdir, runs_before).data.tags
    assert tags["pretrain.stopped_because"] == "max_minutes"
    assert tags["adversarial.stopped_because"] == "iterations"
    # amp_bf16: auto (the quickstart's) follows what this CPU has, as oneDNN reports it
    assert tags["pretrain.amp_bf16"] == str(cpu_has_fast_bf16())


def cpu_lists_bf16_instructions() -> bool:
    """Whether Linux lists AMX-BF16 or AVX512-BF16 for this CPU: read here, not devices.py's."""
    text = Path("/proc/cpuinfo").read_text()
    return bool(re.search(r"^flags\s*:.*\b(amx_bf16|avx512_bf16)\b", text, re.MULTILINE))


@pytest.mark.skipif(not Path("/proc/cpuinfo").is_file(), reason="reads the CPU's flags in "
                    "/proc/cpuinfo (Linux), which this machine does not have")
@pytest.mark.parametrize("limit", ["AVX512_CORE", "AVX512_CORE_BF16"])
def test_auto_precision_follows_the_onednn_limit_in_both_phases_and_upscale(
        tiny_quickstart, tmp_path, limit):
    """The quickstart's `amp_bf16: auto` and `precision: auto` with oneDNN held at a user's
    ONEDNN_MAX_CPU_ISA, no mocks. AVX512_CORE is an AVX-512 CPU without bf16 (Skylake to Ice
    Lake Xeons), where oneDNN emulates bf16 yet reports it supported: float32 everywhere.
    AVX512_CORE_BF16 keeps AVX512-BF16 (Zen 4; an AMX Xeon without AMX): bf16 where the CPU
    has it."""
    workdir = project(tiny_quickstart, tmp_path)
    inputs = tmp_path / "photos"
    shutil.copytree(workdir / "data/05_model_input/eval/skimage_heldout/LR_x4", inputs)
    runs_before = runs(workdir)
    done = kedro_run(workdir, "--pipelines=train_gan,upscale",
                     tiny() + f",upscale.input_dir={inputs}", env={"ONEDNN_MAX_CPU_ISA": limit})
    bf16 = limit == "AVX512_CORE_BF16" and cpu_lists_bf16_instructions()
    tags = new_run(workdir, runs_before).data.tags
    assert tags["pretrain.amp_bf16"] == tags["adversarial.amp_bf16"] == str(bf16)
    assert tags["upscale.precision"] == ("bf16" if bf16 else "fp32")
    why = tags["pretrain.amp_bf16_reason"]
    assert why == tags["adversarial.amp_bf16_reason"] == tags["upscale.precision_reason"]
    if bf16:
        assert "AVX512-BF16" in why and "AMX" not in why  # AMX is above the limit
    else:
        assert f"ONEDNN_MAX_CPU_ISA={limit}" in why or "neither AMX nor AVX512-BF16" in why
    assert " ".join(why.split()) in " ".join(done.split())  # logged as well


def test_imagenet_vgg_offline_stops_before_training_naming_the_file(tiny_quickstart, tmp_path):
    workdir = project(tiny_quickstart, tmp_path)
    torch_home = tmp_path / "empty_torch_home"
    torch_home.mkdir()
    env, log = offline_env(tmp_path / "offline")
    in_progress = workdir.joinpath(*MODELS, "in_progress")

    def checkpoints_in_progress():  # name -> inode: a rewrite replaces the file
        return {p.name: p.stat().st_ino for p in in_progress.glob("*.pt")}

    checkpoints_before = checkpoints_in_progress()
    pretrained_before = versions(workdir.joinpath(*MODELS, "generator_pretrained.pt"))
    done = kedro(workdir, "run", "--env=quickstart", "--pipelines=train_gan",
                 tiny(**{"perceptual.weights": "imagenet"}),
                 env={**env, "TORCH_HOME": str(torch_home)}, timeout=300)
    assert done.returncode != 0
    place = torch_home / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth"
    assert f"placethefilevgg19-dcbb9e9d.pthat{place}" in squashed(done), done.stderr[-3000:]
    assert "download.pytorch.org" in log.read_text()  # it tried, and the guard refused
    # nothing was trained: no checkpoint written, in progress or final
    assert checkpoints_before and checkpoints_in_progress() == checkpoints_before
    assert versions(workdir.joinpath(*MODELS, "generator_pretrained.pt")) == pretrained_before


def test_vgg_weights_from_a_file_are_used_and_recorded(tiny_quickstart, tmp_path):
    workdir = project(tiny_quickstart, tmp_path)
    weights = tmp_path / "models" / "vgg19.pth"
    weights.parent.mkdir()
    torch.manual_seed(0)  # torchvision's vgg19().features, random: only the file format matters
    torch.save(vgg.make_layers(vgg.cfgs["E"]).state_dict(), weights)
    runs_before = runs(workdir)
    kedro_run(workdir, "--pipelines=train_gan", tiny(**{"perceptual.weights": weights}))
    tags = new_run(workdir, runs_before).data.tags
    assert tags["pretrain.perceptual_weights"] == f"file:{weights}"
    assert tags["adversarial.perceptual_weights"] == f"file:{weights}"
