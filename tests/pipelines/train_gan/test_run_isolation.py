"""Two `kedro run`s overlapping in one project: each run's phase 2 starts from its own phase 1.

Kedro loads a versioned input at its latest version, so without RunIsolationHooks a run whose
phase 1 finished before another run's would train its phase 2 from the other run's newer
pretrained generator. The overlap is made certain, not timed: run A pauses right after saving
its pretrained generator (faults/sitecustomize.py, `pause`) until run B has saved a newer one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import torch
from conftest import QUIET_ENV, checkpoint_versions, kedro_project
from test_resumed_training import FAULTS, TINY, kedro, mlflow_runs, prepared, succeeded  # noqa: F401 (fixture)

from srgan_pipeline.checkpoints import evaluated_weights
from srgan_pipeline.resume import weights_fingerprint


def test_each_run_trains_phase_two_from_its_own_pretrained_generator(prepared, tmp_path,  # noqa: F811
                                                                     monkeypatch):
    shutil.copytree(prepared, tmp_path, dirs_exist_ok=True)
    project = kedro_project(tmp_path, monkeypatch)
    release = tmp_path / "release"
    pretrained = project / "data/06_models/generator_pretrained.pt"
    env = {**os.environ, **QUIET_ENV, "SRGAN_KILL": "after:generator_pretrained.pt/:1:pause",
           "SRGAN_PAUSE_UNTIL": str(release),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(FAULTS),
                                                       os.environ.get("PYTHONPATH")]))}
    run_a = subprocess.Popen([sys.executable, "-m", "kedro", "run", "--env=quickstart",
                              "--pipelines=train_gan", f"--params={TINY}"], cwd=project,
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
    try:
        # A is paused once its pretrained generator is on disk (the rename it waits at is done).
        while not checkpoint_versions(project, "generator_pretrained"):
            assert run_a.poll() is None, run_a.stderr.read()[-3000:]
            time.sleep(0.1)
        (a_version,) = [p.parent.name for p in checkpoint_versions(project,
                                                                   "generator_pretrained")]
        # B: other pretrained weights (another seed), saved under a newer version.
        succeeded(kedro(project, "--pipelines=train_gan", "--to-nodes=pretrain_generator",
                        f"--params={TINY},train_gan.pretrain.seed=1"))
        versions = [p.parent.name for p in checkpoint_versions(project, "generator_pretrained")]
        assert len(versions) == 2 and versions[0] == a_version  # B's is now the latest
    finally:
        release.touch()
    assert run_a.wait(timeout=600) == 0, run_a.stderr.read()[-3000:]

    def started_from(version: str) -> str:
        state = torch.load(pretrained / version / "generator_pretrained.pt", weights_only=True)
        return weights_fingerprint(evaluated_weights(state)["generator"])

    (gan,) = (project / "data/06_models/generator_gan.pt").glob("*/generator_gan.pt")
    gan = torch.load(gan, weights_only=True)
    assert started_from(versions[0]) != started_from(versions[1])
    assert gan["run_identity"]["fields"]["started_from"] == started_from(a_version)
    # and each run kept its own MLflow run: A's holds phase 2, B's (started later) phase 1 only
    run_of_a, run_of_b = mlflow_runs(project)
    assert gan["mlflow_run_id"] == run_of_a.info.run_id
    assert [r.info.status for r in (run_of_a, run_of_b)] == ["FINISHED", "FINISHED"]
    assert "gan/adversarial" in run_of_a.data.metrics, sorted(run_of_a.data.metrics)
    assert "gan/adversarial" not in run_of_b.data.metrics, sorted(run_of_b.data.metrics)
