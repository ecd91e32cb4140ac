"""Shared fixtures. Tests that need ../shared/datasets skip when it is absent."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import importlib
import io
import os
import random
import shutil
import socket
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from kedro.framework.startup import bootstrap_project
from PIL import Image

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATASETS = PROJECT_ROOT.parent / "shared" / "datasets"


def documentation(page: str) -> str:
    """The text of a documentation page: ``README.md`` (the front page) or a page of docs/."""
    path = PROJECT_ROOT / page if page == "README.md" else PROJECT_ROOT / "docs" / page
    return path.read_text()


def shared_dataset(*parts: str) -> Path:
    """Path under ../shared/datasets, or skip the test with the reason."""
    path = SHARED_DATASETS.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent: this check needs the benchmark data beside the project")
    return path


def optional_extra(module: str, extra: str):
    """``import module`` of an optional extra, or skip the test where it is not installed.

    CI installs every extra and sets SRGAN_TEST_EXTRAS (comma-separated extras), so that there a
    missing package fails the test instead of skipping it: the extra's tests really run.
    """
    if extra in os.environ.get("SRGAN_TEST_EXTRAS", "").split(","):
        return importlib.import_module(module)
    return pytest.importorskip(module, reason=f"the optional {extra} extra is not installed")


def kedro_project(workdir: Path, monkeypatch: pytest.MonkeyPatch, *,
                  tracking_store: bool = True) -> Path:
    """A scratch copy of the project's settings, so a run's data/ and mlflow.db land in workdir.

    Kedro makes catalog paths absolute against the project path, so a run must think the
    scratch folder is the project. ``tracking_store``: with an empty mlflow.db (see
    `empty_tracking_store`); False for a test of what a first run does without one.
    """
    if not (workdir / "conf").exists():
        shutil.copytree(PROJECT_ROOT / "conf", workdir / "conf",
                        ignore=shutil.ignore_patterns("local"))
        (workdir / "conf" / "local").mkdir()
        for name in ("pyproject.toml", ".telemetry"):
            shutil.copy(PROJECT_ROOT / name, workdir / name)
        (workdir / "src").mkdir()  # the package is imported from its installed location
        if tracking_store:
            empty_tracking_store(workdir)
    monkeypatch.chdir(workdir)  # parameters such as data_prep.raw_dir are relative to it
    bootstrap_project(workdir)
    return workdir


_TEMPLATES: dict[str, Path] = {}  # the session's folder for built-once files (tmp_templates)


@pytest.fixture(scope="session", autouse=True)
def tmp_templates(tmp_path_factory) -> Path:
    """Where this pytest process keeps files it builds once and copies (no work until asked)."""
    _TEMPLATES["folder"] = tmp_path_factory.mktemp("templates")
    return _TEMPLATES["folder"]


def empty_tracking_store(workdir: Path) -> Path:
    """A project's mlflow.db as a first tracked `kedro run` leaves it before it logs anything:
    MLflow's tables migrated, the Default experiment's artifacts under workdir/mlruns/0.

    Creating and migrating a sqlite store costs a new process ~3 s, paid once here instead of
    by every tracked `kedro run` in a fresh project; tiny_quickstart (and the tests of a first
    run) still create theirs the user's way.
    """
    import sqlite3

    template = _TEMPLATES["folder"] / "mlflow.db"
    if not template.exists():
        import mlflow

        building = template.with_suffix(".building")
        mlflow.MlflowClient(tracking_uri=f"sqlite:///{building}").search_experiments()
        building.rename(template)
    target = workdir / "mlflow.db"
    shutil.copyfile(template, target)
    with contextlib.closing(sqlite3.connect(target)) as db, db:
        db.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
                   (str(workdir.resolve() / "mlruns" / "0"),))
    return target


def tiny_training(settings: dict[str, object] | None = None) -> str:
    """The ``--params`` value of a train_gan shrunk to seconds (8-channel, 1-block models,
    batches of 2, a few steps): enough to exercise every node, checkpoint and MLflow record.
    ``settings`` (keys under ``train_gan``) are added or replace the defaults."""
    values = {"num_workers": 0, "generator.channels": 8, "generator.num_blocks": 1,
              "critic.base_channels": 8, "pretrain.iterations": 4, "pretrain.batch_size": 2,
              "adversarial.iterations": 2, "adversarial.batch_size": 2,
              "adversarial.n_critic": 1} | (settings or {})
    return ",".join(f"train_gan.{key}={value}" for key, value in values.items())


TINY_TRAINING = tiny_training()


def conf_parameters(env: str, runtime_params: dict | None = None) -> dict:
    """An environment's parameters as `kedro run --env=ENV` resolves them: the project's
    CONFIG_LOADER_ARGS (conf/base soft-merged with the environment), then ``runtime_params``
    as --params would give them. ``base`` is conf/base alone."""
    from kedro.config import OmegaConfigLoader

    from srgan_pipeline.settings import CONFIG_LOADER_ARGS

    loader = OmegaConfigLoader(conf_source=str(PROJECT_ROOT / "conf"), env=env,
                               runtime_params=runtime_params, **CONFIG_LOADER_ARGS)
    return loader["parameters"]


def with_settings(block: dict, changes: dict[str, object]) -> dict:
    """A copy of a parameter block with ``changes`` (``{"a.b": value}``) set, as --params
    sets them; the block itself is left as it was."""
    block = copy.deepcopy(block)
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        target = block
        for key in parents:
            target = target[key]
        target[last] = value
    return block


# MLflow reads DO_NOT_TRACK only as "true"; kedro-telemetry is also refused by .telemetry.
QUIET_ENV = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true",
             "KEDRO_DISABLE_TELEMETRY": "1"}
# Variables by which a library concludes it runs under a test or CI and keeps its telemetry
# quiet (MLflow reads all of these, pytest sets PYTEST_CURRENT_TEST): a test of the project's
# own telemetry switches runs its child without them.
TESTING_ENV = ("PYTEST_CURRENT_TEST", "PYTEST_VERSION", "CI", "GITHUB_ACTIONS", "CIRCLECI",
               "GITLAB_CI", "JENKINS_URL", "TRAVIS", "TF_BUILD", "BITBUCKET_BUILD_NUMBER",
               "CODEBUILD_BUILD_ARN", "BUILDKITE", "TEAMCITY_VERSION", "CLOUD_RUN_EXECUTION",
               "RUNBOT_HOST_URL", "RUNBOT_BUILD_NAME", "RUNBOT_WORKER_ID")


def child_env(quiet: bool = True, env: dict[str, str] | None = None) -> dict[str, str]:
    """A child process's environment: this one plus QUIET_ENV (``quiet``), or this one without
    QUIET_ENV and TESTING_ENV (``quiet=False``: as a user's shell, so a test can check that the
    project itself keeps telemetry off); ``env`` entries are added last."""
    hiding = () if quiet else (*QUIET_ENV, *TESTING_ENV)
    child = {k: v for k, v in os.environ.items() if k not in hiding}
    child.update((QUIET_ENV if quiet else {}) | (env or {}))
    return child


def kedro(workdir: Path, *args: str, env: dict[str, str] | None = None, quiet: bool = True,
          timeout: float = 600) -> subprocess.CompletedProcess:
    """`kedro ARGS` in a new process of this interpreter (the project's own Kedro, never a
    `kedro` found first on PATH), as a user runs it, in ``workdir``.

    ``quiet`` adds QUIET_ENV; ``quiet=False`` removes those variables and TESTING_ENV, so a test
    can check that the project itself keeps telemetry off. ``env`` entries are added last.
    """
    return subprocess.run([sys.executable, "-m", "kedro", *args], cwd=workdir,
                          env=child_env(quiet, env),
                          capture_output=True, text=True, timeout=timeout)


def kedro_run(workdir: Path, *args: str, **kwargs) -> str:
    """`kedro run --env=quickstart ARGS` in a new process (see `kedro`); returns stdout.

    A new process also because kedro-mlflow's hook keeps per-process state: a second session
    in one process would reuse the first one's MLflow run.
    """
    done = kedro(workdir, "run", "--env=quickstart", *args, **kwargs)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return done.stdout


def kedro_run_fails(workdir: Path, *args: str) -> str:
    """`kedro run --env=quickstart ARGS` that must exit non-zero; returns stdout + stderr with
    runs of whitespace as one space (the error box wraps long lines at the console width)."""
    done = kedro(workdir, "run", "--env=quickstart", *args, env={"COLUMNS": "200"})
    output = done.stdout + done.stderr
    assert done.returncode != 0, output[-4000:]
    return " ".join(output.split())


def copy_project(source: Path, dest: Path) -> Path:
    """A copy of a scratch project that a test may run in without touching ``source``.

    Checkpoints and images under data/ and mlruns/ are hard links (cheap: checkpoints are
    large): this project writes them by replacing the file (atomic writes) and MLflow only adds
    artifacts, so a run in the copy never changes the source's. Everything else (JSON, CSV,
    mlflow.db, which are written in place) is copied.
    """
    def link_or_copy(src, dst):
        if not str(src).endswith((".pt", ".png")):
            return shutil.copy2(src, dst)
        try:
            os.link(src, dst)
        except OSError:  # another file system
            shutil.copy2(src, dst)
        return dst

    for name in ("conf", "src"):
        shutil.copytree(source / name, dest / name, dirs_exist_ok=True)
    for name in ("pyproject.toml", ".telemetry", "mlflow.db"):
        if (source / name).exists():
            shutil.copy2(source / name, dest / name)
    for name in ("data", "mlruns"):
        if (source / name).exists():
            shutil.copytree(source / name, dest / name, copy_function=link_or_copy,
                            dirs_exist_ok=True)
    return dest


def data_prep_copy(source: Path, dest: Path) -> Path:
    """A `copy_project` of ``source`` without its models and MLflow runs: its data_prep only
    (a project to train in from the start, e.g. from the session's tiny quickstart)."""
    workdir = copy_project(source, dest)
    shutil.rmtree(workdir / "data" / "06_models")
    shutil.rmtree(workdir / "mlruns", ignore_errors=True)
    empty_tracking_store(workdir)  # replaces the source's
    return workdir


def versions(folder: Path) -> set[str]:
    """The version folders of a versioned Kedro dataset (empty when it was never saved)."""
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def latest_version(dataset: Path) -> Path:
    """The newest saved file (or partition folder) of a versioned Kedro dataset at ``dataset``
    (``.../<name>/<version>/<name>``)."""
    saved = sorted(dataset.glob(f"*/{dataset.name}"))
    assert saved, f"{dataset} holds no saved version"
    return saved[-1]


def checkpoint_versions(workdir: Path, name: str) -> list[Path]:
    """The saved versions of checkpoint ``name`` (e.g. generator_gan) in a project, oldest
    first."""
    return sorted((workdir / "data" / "06_models" / f"{name}.pt").glob(f"*/{name}.pt"))


def latest_checkpoint(workdir: Path, name: str) -> dict:
    """The newest saved version of checkpoint ``name`` in a project, loaded."""
    import torch

    return torch.load(latest_version(workdir / "data" / "06_models" / f"{name}.pt"),
                      weights_only=True)


def new_version(folder: Path, before: set[str]) -> str:
    """The one version of ``folder`` that is not in ``before``."""
    added, = versions(folder) - before
    return added


@pytest.fixture(autouse=True)
def _no_mlflow_model_code_on_sys_path():
    """Loading a models-from-code MLflow model puts its ``artifacts/code`` folder first on
    ``sys.path`` for the rest of the process. Processes the suite spawns later (data-parallel
    ranks start with the parent's path) would then import the project from that copy, which has
    no conf/base. The loaded model keeps its modules; later tests and their children get the
    checkout's own package again."""
    yield
    sys.path[:] = [entry for entry in sys.path
                   if Path(entry).parts[-2:] != ("artifacts", "code")]


@pytest.fixture(scope="session")
def tiny_quickstart(tmp_path_factory) -> tuple[Path, str]:
    """A scratch project after the whole quickstart (data_prep, tiny train_gan, evaluation):
    its folder and the run's stdout. Shared by the tests that only read what it made; a test
    that runs anything in it works on a `copy_project` of it.

    Built once for the whole session (`built_once`). The run is offline by construction and
    without QUIET_ENV, so it also witnesses that the project itself keeps telemetry off and uses
    no network (tests/test_telemetry.py reads QUICKSTART_NETWORK_LOG).
    """
    def build(workdir: Path) -> str:
        with pytest.MonkeyPatch.context() as monkeypatch:
            # a user's first run: it creates its own mlflow.db
            kedro_project(workdir, monkeypatch, tracking_store=False)
        env, _ = offline_env(workdir / QUICKSTART_NETWORK_LOG.parent)
        return kedro_run(workdir, f"--params={TINY_TRAINING}", env=env, quiet=False)

    workdir, stdout = built_once(tmp_path_factory, "tiny_quickstart", build)
    with pytest.MonkeyPatch.context() as monkeypatch:
        kedro_project(workdir, monkeypatch)  # bootstraps Kedro in this process
    return workdir, stdout


def built_once(tmp_path_factory, name: str, build: Callable[[Path], str]) -> tuple[Path, str]:
    """``build(folder)`` run once for the whole session, also under pytest-xdist: the first
    worker to need it builds it under a file lock in the folder all workers share (xdist's
    documented recipe), the others read the finished one. Returns the folder and the text
    ``build`` returned (kept beside it, also the sign that the build finished)."""
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the one folder above every worker's own
    folder, finished = shared / name, shared / f"{name}.finished"
    with FileLock(str(shared / f"{name}.lock")):
        if not finished.exists():
            shutil.rmtree(folder, ignore_errors=True)  # a build cut short by a crash
            folder.mkdir()
            finished.write_text(build(folder))
    return folder, finished.read_text()


QUICKSTART_NETWORK_LOG = Path(".offline") / "network.log"  # in tiny_quickstart's folder


OFFLINE_SITECUSTOMIZE = '''
"""Written by tests/conftest.py: refuse and record every network use but loopback."""
import ipaddress
import os
import socket

_LOG = os.environ["SRGAN_TEST_NETWORK_LOG"]
with open(_LOG + ".env", "a") as _env:  # which telemetry switches this process inherited
    _env.write(" ".join(k for k in WATCHED if k in os.environ) + "\\n")
_connect, _connect_ex, _getaddrinfo = (socket.socket.connect, socket.socket.connect_ex,
                                       socket.getaddrinfo)


def _record(what):
    with open(_LOG, "a") as log:
        log.write(f"{os.getpid()} {what}\\n")
    return OSError(101, f"network refused by the test: {what}")


def _local(host):
    if host in (None, "", "localhost") or str(host).endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


def connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _local(address[0]):
        raise _record(f"connect {address[0]}:{address[1]}")
    return _connect(self, address)


def connect_ex(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _local(address[0]):
        _record(f"connect {address[0]}:{address[1]}")
        return 101
    return _connect_ex(self, address)


def getaddrinfo(host, *args, **kwargs):
    if not _local(host if isinstance(host, str) else (host or b"").decode()):
        raise socket.gaierror(socket.EAI_NONAME, str(_record(f"resolve {host}")))
    return _getaddrinfo(host, *args, **kwargs)


socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = (connect, connect_ex,
                                                                        getaddrinfo)
'''.replace("WATCHED", repr((*QUIET_ENV, *TESTING_ENV)))


def offline_env(folder: Path) -> tuple[dict[str, str], Path]:
    """Child-process environment in which every Python process refuses non-loopback network
    use and records each attempt (a sitecustomize.py first on PYTHONPATH); and the log file.

    Offline by construction, so a test of the offline behaviour cannot reach the real server,
    and the log shows whether anything tried.
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(OFFLINE_SITECUSTOMIZE)
    log = folder / "network.log"
    log.touch()
    path = os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH")) if p)
    return {"PYTHONPATH": path, "SRGAN_TEST_NETWORK_LOG": str(log)}, log


def closed_port_url(name: str = "archive.zip") -> str:
    """A URL on 127.0.0.1 where nothing listens: a download from it fails at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/{name}"


@pytest.fixture
def offline_torch_hub(tmp_path, monkeypatch) -> Path:
    """An empty torch hub folder (``torch.hub.get_dir()``, via TORCH_HOME) where no download
    succeeds: offline by construction, for the weights torch's hub would fetch (LPIPS's
    backbone, NIQE's model)."""
    import urllib.error

    import torch

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("network refused by the test")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    return tmp_path / "torch" / "hub"


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
        etag = f'"{hashlib.sha256(data).hexdigest()[:16]}"'  # strong: changes with the bytes
        srv.if_ranges.append(self.headers.get("If-Range"))
        start, rng = 0, self.headers.get("Range")
        if_range = self.headers.get("If-Range")  # RFC 9110: a changed file is sent whole (200)
        if rng and not srv.ignore_range and if_range in (None, etag):
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
        self.send_header("ETag", etag)
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
    """A real HTTP server on 127.0.0.1 (Range and If-Range support with a strong ETag, switches
    to drop or stall a transfer)."""
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    srv.files, srv.requests, srv.ignore_range, srv.if_ranges = {}, [], False, []
    srv.drop_after = srv.stall_after = None
    srv.send_length = True
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_files(n: int = 3, size: int = 4000) -> dict[str, bytes]:
    """``HR/0001.png`` .. : files that start as PNGs do, random after, for archives to carry."""
    return {f"HR/{i:04d}.png": PNG_MAGIC + os.urandom(size) for i in range(1, n + 1)}


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
                 env: dict[str, str] | None = None, wait_s: float = 120,
                 quiet: bool = True) -> subprocess.Popen:
    """``command`` in its own process group (so that its workers can be stopped with it),
    output to ``log``; returns once ``health_url`` answers 200 (fails the test otherwise).

    ``quiet=False`` starts it without QUIET_ENV and TESTING_ENV, as a user's shell would (as
    ``kedro(quiet=False)``): ``env`` then holds only what the documented command sets itself
    (plus, typically, ``offline_env``'s guard)."""
    import urllib.request

    with log.open("w") as out:
        proc = subprocess.Popen(command, cwd=cwd, env=child_env(quiet, env),
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


# --------------------------------------------------------------------------------------------
# Test order: `pytest --test-order=reverse` or `--test-order=random` (seed: --test-order-seed)
# check that no test depends on another having run first. Default: file order.
# --------------------------------------------------------------------------------------------


def pytest_addoption(parser):
    group = parser.getgroup("srgan_pipeline")
    group.addoption("--test-order", choices=("files", "reverse", "random"), default="files",
                    help="run modules, and the tests in each, in file order (default), "
                         "reversed, or shuffled")
    group.addoption("--test-order-seed", type=int, default=None,
                    help="seed of --test-order=random (default: a new one, printed)")


def pytest_configure(config):
    if config.getoption("--test-order") == "random" and \
            config.getoption("--test-order-seed") is None:
        config.option.test_order_seed = random.randrange(10_000)


def pytest_report_header(config):
    order = config.getoption("--test-order")
    if order == "random":
        return f"test order: random, --test-order-seed={config.getoption('--test-order-seed')}"
    return f"test order: {order}"


def pytest_make_parametrize_id(config, val, argname):
    """Bytes parameters (archives, images) are named by their size: their contents can differ
    between processes (zip and gzip stamp the time, some are random), and every pytest-xdist
    worker must collect the same test ids."""
    if isinstance(val, bytes):
        return f"{argname}{len(val)}B"
    return None


def pytest_collection_modifyitems(config, items):
    """Reorder whole modules, then the tests inside each (module fixtures are set up once)."""
    order = config.getoption("--test-order")
    if order == "files":
        return
    modules: dict[str, list] = {}
    for item in items:
        modules.setdefault(item.nodeid.split("::")[0], []).append(item)
    groups = list(modules.values())
    if order == "reverse":
        groups = [group[::-1] for group in groups[::-1]]
    else:
        rng = random.Random(config.getoption("--test-order-seed"))
        rng.shuffle(groups)
        for group in groups:
            rng.shuffle(group)
    items[:] = [item for group in groups for item in group]


# --------------------------------------------------------------------------------------------
# Serving (tests/serving, tests/e2e/test_try_it_page.py): the registered generators of the
# tiny quickstart and the checkpoints evaluation scored them from.
# --------------------------------------------------------------------------------------------

REGISTERED_MODEL = "srgan_pipeline_generator"


def scored_checkpoint(workdir: Path, model: str) -> dict:
    """The train_gan checkpoint that evaluation read for ``model`` (srresnet / srgan): the one
    version of its dataset in a project where train_gan ran once."""
    import torch

    from srgan_pipeline.names import GENERATOR_DATASETS

    path, = checkpoint_versions(workdir, GENERATOR_DATASETS[model])
    return torch.load(path, map_location="cpu", weights_only=True)


def registry_client(workdir: Path):
    import mlflow

    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


@pytest.fixture(scope="session")
def served_quickstart(tiny_quickstart, tmp_path_factory) -> tuple[Path, int, str]:
    """A copy of the tiny quickstart whose @champion a user set by hand: (folder, version,
    model). A few training steps score below bicubic, so evaluation sets no champion
    (tests/serving/test_registry.py); what docs/serving.md serves is `models:/...@champion`, so the
    serving tests promote the best version as `MlflowClient.set_registered_model_alias` does."""
    workdir = copy_project(tiny_quickstart[0], tmp_path_factory.mktemp("served") / "project")
    client = registry_client(workdir)
    best = max(client.search_model_versions(f"name = '{REGISTERED_MODEL}'"),
               key=lambda v: float(v.tags["score"]))
    client.set_registered_model_alias(REGISTERED_MODEL, "champion", best.version)
    return workdir, int(best.version), best.tags["model"]


# --------------------------------------------------------------------------------------------
# A small tmpfs mounted by a test: a real full disk (ENOSPC) or a read-only folder (EROFS),
# not a patched call. Needs mount rights (root here and in CI); skips with the reason otherwise.
# --------------------------------------------------------------------------------------------

@contextlib.contextmanager
def tmpfs(folder: Path, size: str, read_only: bool = False):
    """A tmpfs of ``size`` (mount's syntax: 256k, 2m) on ``folder`` while inside; resize it
    with ``remount(folder, size)``."""
    folder.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs on {folder} ({done.stderr.strip()}): this check "
                    "needs a real full or read-only disk")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], check=True)


def remount(folder: Path, size: str) -> None:
    """Give a test's tmpfs on ``folder`` a new size (the user freeing space)."""
    subprocess.run(["mount", "-o", f"remount,size={size}", str(folder)], check=True)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from intra-op threads, and when another process holds a core
    the idle OpenMP threads spin: the training tests went from 5 s to 120 s on a busy 2-core
    box, tests/inference from 17 s to under 1 s. A module takes it with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def perceptual():
    """The cheapest VGG perceptual loss: one block, random weights (no download)."""
    from srgan_pipeline.models import VGGPerceptualLoss

    return VGGPerceptualLoss(layer="relu1_2", weights="random")


# --------------------------------------------------------------------------------------------
# Inference on tiny generators (tests/inference): the data and the thread setting they share.
# --------------------------------------------------------------------------------------------

def lr_waves(height: int, width: int, seed: int = 0, *, period: int = 4, phase: int = 1,
             rows: int = 5, noise: float = 20) -> np.ndarray:
    """A uint8 RGB LR image: smooth colour waves plus noise, structure for the convs to carry
    across tile seams. Channel c waves with sin(x / (period + c) + phase * c) * cos(y / rows)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    waves = np.stack([128 + 90 * np.sin(xx / (period + c) + phase * c) * np.cos(yy / rows)
                      for c in range(3)], -1)
    return np.clip(waves + rng.normal(0, noise, waves.shape), 0, 255).astype(np.uint8)


def grey_levels(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel absolute difference of two uint8 images of one shape, in grey levels."""
    assert a.shape == b.shape
    return np.abs(a.astype(np.int16) - b.astype(np.int16))


class _FP32OnlyOpenVINO:
    """Stands in for OpenVINO on a CPU without bf16 units: it runs fp32 whatever is asked."""

    def __init__(self, generator, *, precision, param):
        from srgan_pipeline.inference import inference_model

        self.asked, self.precision = precision, "fp32"
        self._model = inference_model(generator, device="cpu", channels_last=False)

    def __call__(self, x):
        return self._model(x.float().contiguous())


@pytest.fixture
def openvino_runs_fp32(monkeypatch):
    """``runtime: openvino`` as on a CPU where OpenVINO runs fp32 when bf16 is asked, without
    the extra installed (torch computes it): what the Upscaler then records and reports."""
    from srgan_pipeline.inference import upscaler

    monkeypatch.setattr(upscaler, "import_openvino", lambda param: None)
    monkeypatch.setattr(upscaler, "OpenVINOModel", _FP32OnlyOpenVINO)
