"""docs/tracking.md "MLflow": `kedro mlflow ui` (as typed, with its documented --port option) serves
the tiny quickstart's run and its artifacts over MLflow's HTTP API.

The browser test of the UI pages is tests/e2e/test_mlflow_ui.py; this one needs no browser.
kedro-mlflow starts `mlflow ui` by name from PATH, so the child's PATH starts with this
interpreter's bin folder: the `mlflow` beside the project's own Kedro.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import mlflow
from conftest import QUIET_ENV, copy_project, free_port, stop_process_group

FIGURE = "comparisons/skimage_heldout/chelsea.png"
START_TIMEOUT_S = 120


def get(url: str, body: dict | None = None) -> bytes:
    """GET ``url``, or POST ``body`` as JSON; the response body."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url) if body is None else urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with opener.open(request, timeout=10) as response:
        assert response.status == 200
        return response.read()


def test_kedro_mlflow_ui_serves_the_run_and_its_artifacts(tiny_quickstart, tmp_path):
    workdir = copy_project(tiny_quickstart[0], tmp_path / "project")
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("srgan_pipeline")
    run, = client.search_runs([experiment.experiment_id])
    port = free_port()
    env = {**os.environ, **QUIET_ENV, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])}
    log = tmp_path / "ui.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "kedro", "mlflow", "ui", "--port",
                                    str(port)], cwd=workdir, env=env, stdin=subprocess.DEVNULL,
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"  # host 127.0.0.1 from conf/base/mlflow.yml
    try:
        started = time.monotonic()
        while True:
            assert process.poll() is None, log.read_text(errors="replace")[-3000:]
            assert time.monotonic() - started < START_TIMEOUT_S, log.read_text()[-3000:]
            try:
                get(f"{base}/health")
                break
            except OSError:
                time.sleep(0.5)
        found = json.loads(get(f"{base}/api/2.0/mlflow/runs/search",
                               {"experiment_ids": [experiment.experiment_id]}))["runs"]
        assert [r["info"]["run_id"] for r in found] == [run.info.run_id]
        history = json.loads(get(f"{base}/api/2.0/mlflow/metrics/get-history?" + urllib.parse
                                 .urlencode({"run_id": run.info.run_id,
                                             "metric_key": "pretrain/pixel"})))["metrics"]
        assert [m["value"] for m in history] == [
            m.value for m in client.get_metric_history(run.info.run_id, "pretrain/pixel")]
        figure = get(f"{base}/get-artifact?" + urllib.parse.urlencode(
            {"path": FIGURE, "run_uuid": run.info.run_id}))
        local = Path(client.download_artifacts(run.info.run_id, FIGURE, str(tmp_path)))
        assert figure == local.read_bytes() and figure.startswith(b"\x89PNG")
    finally:
        stop_process_group(process)
    assert process.returncode is not None
