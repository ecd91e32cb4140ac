"""docs/tracking.md "Telemetry": Kedro's and MLflow's telemetry are off for this project, and only
the download nodes use the network.

The witness is the shared tiny quickstart (conftest): a whole `kedro run` in a child process
started without the test environment's DO_NOT_TRACK / MLFLOW_DISABLE_TELEMETRY /
KEDRO_DISABLE_TELEMETRY, with a sitecustomize.py that refuses and records every non-loopback
connection or name lookup of every Python process. Its sources are all local (scikit-image's
photographs), so any record is a regression.
"""

import os
import subprocess
import sys

from conftest import QUICKSTART_NETWORK_LOG, QUIET_ENV, offline_env


def test_the_network_guard_refuses_and_records(tmp_path):
    """The guard the next test relies on: a lookup and a connection are refused and logged."""
    env, log = offline_env(tmp_path / "offline")
    code = ("import socket, urllib.request\n"
            "try:\n    urllib.request.urlopen('http://example.org', timeout=5)\n"
            "except OSError as e:\n    print('REFUSED')\n"
            "s = socket.socket()\n"
            "try:\n    s.connect(('192.0.2.1', 80))\n"
            "except OSError as e:\n    print('REFUSED')\n")
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["REFUSED", "REFUSED"], done.stdout + done.stderr
    assert [line.split(" ", 1)[1] for line in log.read_text().splitlines()] == [
        "resolve example.org", "connect 192.0.2.1:80"]


def test_a_whole_run_without_telemetry_variables_uses_no_network(tiny_quickstart):
    workdir, stdout = tiny_quickstart
    log = workdir / QUICKSTART_NETWORK_LOG
    assert (log.parent / "sitecustomize.py").exists() and log.exists()
    assert "| skimage_heldout | srgan |" in stdout  # the run went through every pipeline
    assert log.read_text() == "", f"network used by the run (telemetry?):\n{log.read_text()}"
    # every Python process of the run started without the test environment's switches
    inherited = log.with_name(log.name + ".env").read_text().splitlines()
    assert inherited and set(inherited) == {""}, (set(QUIET_ENV), inherited)
