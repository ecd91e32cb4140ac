"""A training phase as a job (training/job.py). Training itself, in one process and in
data-parallel ranks, runs through `kedro run` in pipelines/train_gan/; here: what the job
reports, and that training/ stays free of Kedro and MLflow."""

from __future__ import annotations

import subprocess
import sys

import torch
from conftest import conf_parameters

from srgan_pipeline.devices import cpu_bf16, use_bf16_autocast
from srgan_pipeline.params import validate_params
from srgan_pipeline.training.job import Job, announce, build_device

QUICKSTART = conf_parameters("quickstart")["train_gan"]


def job(phase: str = "pretrain", **changes) -> Job:
    settings = validate_params("train_gan", QUICKSTART | changes)
    return Job(phase, settings, store=None, scale=4, generator=None, critic=None,
               perceptual=None, start=None, save=print)


def test_training_imports_no_kedro_and_no_mlflow():
    code = ("import pkgutil, importlib, sys, srgan_pipeline.training as t\n"
            "for m in pkgutil.iter_modules(t.__path__): importlib.import_module(t.__name__ + '.'"
            " + m.name)\n"
            "print(sorted({n.split('.')[0] for n in sys.modules} & {'kedro', 'kedro_mlflow', "
            "'mlflow'}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"


def test_the_run_is_announced_with_its_settings_as_tags():
    one, cpu = job(), torch.device("cpu")
    tags = announce(one, cpu, "in_progress/pretrain-x.pt")
    assert tags == {"pretrain.device": cpu, "pretrain.perceptual_weights": "unused",
                    "pretrain.channels_last": one.cfg.channels_last,
                    "pretrain.amp_bf16": use_bf16_autocast(one.cfg.amp_bf16, cpu),  # "auto"
                    "pretrain.amp_bf16_reason": cpu_bf16().reason,
                    "pretrain.in_progress_checkpoint": "in_progress/pretrain-x.pt"}
    two = job("adversarial", distributed=QUICKSTART["distributed"] | {"nproc_per_node": 2})
    tags = announce(two, torch.device("cpu"), "c.pt")
    assert tags["adversarial.world_size"] == 2 and tags["adversarial.sync_batchnorm"] is False
    assert tags["adversarial.global_batch_size"] == 2 * two.cfg.batch_size


def test_models_for_other_processes_are_built_on_the_cpu():
    cuda = torch.device("cuda")
    assert build_device(job().settings, cuda) == cuda
    spread = QUICKSTART["distributed"] | {"nproc_per_node": 2}
    assert build_device(job(distributed=spread).settings, cuda) == torch.device("cpu")
