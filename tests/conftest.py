"""Shared fixtures. Tests that need ../shared/datasets skip when it is absent."""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import tarfile
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from kedro.framework.startup import bootstrap_project
from PIL import Image

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATASETS = PROJECT_ROOT.parent / "shared" / "datasets"


def shared_dataset(*parts: str) -> Path:
    """Path under ../shared/datasets, or skip the test with the reason."""
    path = SHARED_DATASETS.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent: this check needs the benchmark data beside the project")
    return path


def kedro_project(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch copy of the project's settings, so a run's data/ and mlflow.db land in workdir.

    Kedro makes catalog paths absolute against the project path, so a run must think the
    scratch folder is the project.
    """
    if not (workdir / "conf").exists():
        shutil.copytree(PROJECT_ROOT / "conf", workdir / "conf",
                        ignore=shutil.ignore_patterns("local"))
        (workdir / "conf" / "local").mkdir()
        for name in ("pyproject.toml", ".telemetry"):
            shutil.copy(PROJECT_ROOT / name, workdir / name)
        (workdir / "src").mkdir()  # the package is imported from its installed location
    monkeypatch.chdir(workdir)  # parameters such as data_prep.raw_dir are relative to it
    bootstrap_project(workdir)
    return workdir


# Training shrunk to seconds: enough to exercise every node, checkpoint and MLflow record.
TINY_TRAINING = ",".join([
    "train_gan.num_workers=0", "train_gan.generator.channels=8", "train_gan.generator.num_blocks=1",
    "train_gan.critic.base_channels=8", "train_gan.pretrain.iterations=4",
    "train_gan.pretrain.batch_size=2", "train_gan.adversarial.iterations=2",
    "train_gan.adversarial.batch_size=2", "train_gan.adversarial.n_critic=1",
])
# MLflow reads DO_NOT_TRACK only as "true"; kedro-telemetry is also refused by .telemetry.
QUIET_ENV = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true",
             "KEDRO_DISABLE_TELEMETRY": "1"}


def kedro_run(workdir: Path, *args: str) -> str:
    """`kedro run --env=quickstart ARGS` in a new process, as a user runs it; returns stdout.

    A new process also because kedro-mlflow's hook keeps per-process state: a second session
    in one process would reuse the first one's MLflow run.
    """
    done = subprocess.run(["kedro", "run", "--env=quickstart", *args], cwd=workdir,
                          env={**os.environ, **QUIET_ENV}, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return done.stdout


def kedro_run_fails(workdir: Path, *args: str) -> str:
    """`kedro run --env=quickstart ARGS` that must exit non-zero; returns stdout + stderr with
    runs of whitespace as one space (the error box wraps long lines at the console width)."""
    done = subprocess.run(["kedro", "run", "--env=quickstart", *args], cwd=workdir,
                          env={**os.environ, **QUIET_ENV, "COLUMNS": "200"},
                          capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output[-4000:]
    return " ".join(output.split())


@pytest.fixture(scope="session")
def tiny_quickstart(tmp_path_factory) -> tuple[Path, str]:
    """A scratch project after the whole quickstart (data_prep, tiny train_gan, evaluation):
    its folder and the run's stdout. Shared by the tests that only read what it made."""
    workdir = tmp_path_factory.mktemp("tiny_quickstart")
    with pytest.MonkeyPatch.context() as monkeypatch:
        kedro_project(workdir, monkeypatch)
    return workdir, kedro_run(workdir, f"--params={TINY_TRAINING}")


def write_image(path: Path, size: tuple[int, int] = (128, 96), mode: str = "RGB", seed: int = 0):
    """A random image of ``size`` (width, height) saved at ``path``; returns its RGB array."""
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).convert(mode).save(path)
    return array


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """Three good images of different sizes, one nested, one too small, one corrupt."""
    folder = tmp_path / "images"
    write_image(folder / "a.png", (130, 101), seed=1)
    write_image(folder / "nested" / "b.jpg", (200, 120), seed=2)
    write_image(folder / "c.png", (96, 100), mode="L", seed=3)
    write_image(folder / "tiny.png", (40, 40), seed=4)
    good = (folder / "a.png").read_bytes()
    (folder / "broken.png").write_bytes(good[: len(good) // 2])
    return folder


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):  # noqa: N802 (http.server API)
        srv = self.server
        srv.requests.append((self.path, self.headers.get("Range")))
        data = srv.files.get(self.path)
        if data is None:
            self.send_error(404, "Not Found")
            return
        start, rng = 0, self.headers.get("Range")
        if rng and not srv.ignore_range:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        if srv.send_length:  # off: the end of the body is wherever the connection closes
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if srv.drop_after is not None:  # simulate a connection lost midway
            self.wfile.write(body[: srv.drop_after])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if srv.stall_after is not None:  # simulate a server that stops sending
            self.wfile.write(body[: srv.stall_after])
            self.wfile.flush()
            time.sleep(1.0)
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    """A real HTTP server on 127.0.0.1 (Range support, switches to drop or stall a transfer)."""
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    srv.files, srv.requests, srv.ignore_range = {}, [], False
    srv.drop_after = srv.stall_after = None
    srv.send_length = True
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def zip_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def tar_bytes(
    files: dict[str, bytes], mode: str = "w", links: dict[str, str] | None = None
) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tf.addfile(info)
    return buf.getvalue()


# --- servers started by a test: a free port, a health wait, and a stop of the whole group ---

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(command: list[str], cwd: Path, log: Path, health_url: str,
                 env: dict[str, str] | None = None, wait_s: float = 120) -> subprocess.Popen:
    """``command`` in its own process group (so that its workers can be stopped with it),
    output to ``log``; returns once ``health_url`` answers 200 (fails the test otherwise)."""
    import urllib.request

    with log.open("w") as out:
        proc = subprocess.Popen(command, cwd=cwd, env={**os.environ, **QUIET_ENV, **(env or {})},
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + wait_s
    while True:
        if proc.poll() is not None:
            pytest.fail(f"{command[:4]} exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(health_url, timeout=2) as response:
                if response.status == 200:
                    return proc
        except OSError:
            pass
        if time.monotonic() > deadline:
            stop_process_group(proc)
            pytest.fail(f"{health_url} not up after {wait_s} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.3)


def stop_process_group(proc: subprocess.Popen, grace_s: float = 30) -> None:
    """SIGTERM the process group a test started, wait, then SIGKILL what is left."""
    import signal

    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        proc.poll()  # reap our child so that its zombie does not keep the group alive
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)
