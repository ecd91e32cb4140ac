"""data_prep through Kedro's session on the quickstart environment, in a scratch folder."""

import hashlib
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml
from conftest import (
    QUIET_ENV,
    copy_project,
    kedro_project,
    kedro_run,
    kedro_run_fails,
    tar_bytes,
    write_image,
    zip_bytes,
)
from filelock import FileLock
from kedro.framework.session import KedroSession
from PIL import Image

from srgan_pipeline.sources import NOT_AN_IMAGE
from srgan_pipeline.training_store import TrainingStore


def run_data_prep(workdir, monkeypatch, runtime_params=None):
    project = kedro_project(workdir, monkeypatch)
    with KedroSession.create(project_path=project, env="quickstart",
                             runtime_params=runtime_params) as session:
        session.run(pipeline_names=["data_prep"])


def digests(folder):
    """Every file data_prep writes but the versioned report (its folder name is a timestamp)."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and "08_reporting" not in p.parts}


@pytest.fixture(scope="module")
def quickstart_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("quickstart")
    with pytest.MonkeyPatch.context() as monkeypatch:
        run_data_prep(workdir, monkeypatch)
    return workdir


def test_quickstart_writes_the_store_and_eval_pairs(quickstart_run):
    data = quickstart_run / "data"
    store = TrainingStore(data / "03_primary" / "train_store")
    assert len(store) == 395  # the 192/96 px tiles of the six photographs
    assert len(store.images) == 6 and store.scale == 4
    eval_dir = data / "05_model_input" / "eval" / "skimage_heldout"
    assert sorted(p.name for p in (eval_dir / "HR").iterdir()) == ["chelsea.png", "rocket.png"]
    assert sorted(p.name for p in (eval_dir / "LR_x4").iterdir()) == ["chelsea.png", "rocket.png"]
    report_file, = (data / "08_reporting" / "data_prep_report.json").glob("*/data_prep_report.json")
    report = json.loads(report_file.read_text())
    assert report["train"]["skimage_photos"]["tiles"] == len(store)
    assert report["eval"]["skimage_heldout"]["pairs"] == 2
    assert report["skipped_total"] == 0


def test_rerun_on_unchanged_inputs_writes_identical_files(quickstart_run, tmp_path,
                                                         monkeypatch):
    workdir = copy_project(quickstart_run, tmp_path / "project")  # the rerun adds a report
    before = digests(workdir / "data")
    run_data_prep(workdir, monkeypatch)
    assert digests(workdir / "data") == before


def test_one_worker_writes_the_same_files_as_two(quickstart_run, tmp_path, monkeypatch):
    run_data_prep(tmp_path, monkeypatch, {"data_prep": {"workers": 1}})
    two = digests(quickstart_run / "data")  # the default: all cores, 2 on the CI machine
    assert any(name.startswith("03_primary/train_store/") for name in two)
    assert digests(tmp_path / "data") == two


def test_an_eval_set_added_from_the_command_line_with_a_bad_file(tmp_path, monkeypatch,
                                                                 image_folder):
    params = {"data_prep": {"eval_sets": {"mine": {"path": str(image_folder)}}}}
    run_data_prep(tmp_path, monkeypatch, params)
    pairs = tmp_path / "data" / "05_model_input" / "eval" / "mine"
    assert sorted(p.name for p in (pairs / "HR").rglob("*.png")) == ["a.png", "b.png", "c.png"]
    assert sorted(p.name for p in (pairs / "LR_x4").rglob("*.png")) == ["a.png", "b.png", "c.png"]
    report_file, = (tmp_path / "data" / "08_reporting" / "data_prep_report.json").glob("*/*")
    skipped = json.loads(report_file.read_text())["eval"]["mine"]["skipped"]
    assert sorted(s["file"].rsplit("/", 1)[1] for s in skipped) == ["broken.png", "tiny.png"]


# --- url sources through `kedro run`, against a local HTTP server ------------------------------

OFF = ("data_prep.train_sources.skimage_photos.enabled=false,"
       "data_prep.eval_sets.skimage_heldout.enabled=false")


def _pngs(folder, names, seed):
    """Images written under ``folder`` and their bytes (archive members) and pixels."""
    members, pixels = {}, {}
    for offset, name in enumerate(names):
        pixels[name] = write_image(folder / name, (100, 100), seed=seed + offset)
        members[name] = (folder / name).read_bytes()
    return members, pixels


def _report(workdir):
    path, = (workdir / "data" / "08_reporting" / "data_prep_report.json").glob("*/*")
    return json.loads(path.read_text())


def _latest_report(workdir):
    paths = sorted((workdir / "data" / "08_reporting" / "data_prep_report.json").glob("*/*"))
    return json.loads(paths[-1].read_text())


def test_url_sources_never_share_a_download_through_kedro_run(tmp_path, monkeypatch, server):
    workdir = kedro_project(tmp_path / "project", monkeypatch)
    sources = {  # source -> (group, URL path, archive builder, member names)
        "a": ("train_sources", "/one/data.zip", zip_bytes, ["a1.png", "a2.png"]),
        "b": ("train_sources", "/two/data.zip", zip_bytes, ["b1.png"]),
        "c": ("eval_sets", "/good.zip", zip_bytes, ["c1.png", "c2.png"]),
        "d": ("eval_sets", "/good.tar", tar_bytes, ["d1.png"]),
    }
    pixels, params = {}, [OFF]
    for seed, (source, (group, url_path, build, names)) in enumerate(sources.items()):
        members, pixels[source] = _pngs(tmp_path / source, names, seed=10 * seed)
        server.files[url_path] = build(members)
        params.append(f"data_prep.{group}.{source}.url={server.url}{url_path}")

    kedro_run(workdir, "--pipeline=data_prep", f"--params={','.join(params)}")

    report = _report(workdir)
    data = workdir / "data"
    for source, (group, _, _, names) in sources.items():
        entry = report["train" if group == "train_sources" else "eval"][source]
        assert (entry["found"], entry["kept"]) == (len(names), len(names)), source
        hr = (data / "02_intermediate" / ("train_hr" if group == "train_sources" else "eval_hr")
              / source)
        assert sorted(p.name for p in hr.iterdir()) == names
        for name in names:  # each source holds its own images, not another source's
            np.testing.assert_array_equal(np.asarray(Image.open(hr / name)),
                                          pixels[source][name])
    assert sorted(path for path, _ in server.requests) == sorted(
        url_path for _, url_path, _, _ in sources.values())
    for source, (_, url_path, _, _) in sources.items():  # where docs/data.md says they go
        assert (data / "01_raw" / "downloads" / source / url_path.rsplit("/", 1)[1]).is_file()


@pytest.mark.parametrize("bad", ["web page", "tar cut at a member boundary"])
def test_an_incomplete_download_is_refused_through_kedro_run(tmp_path, monkeypatch, server, bad):
    workdir = kedro_project(tmp_path / "project", monkeypatch)
    names = [f"{i}.png" for i in range(8)]
    members, _ = _pngs(tmp_path / "src", names, seed=0)
    good = tar_bytes(members)
    cut = good[: good.index(members["3.png"]) - 512]  # just before member 4's header
    server.files["/set.tar"] = (b"<!DOCTYPE html><html><body>Sign in</body></html>"
                                if bad == "web page" else cut)
    params = ("--params=data_prep.train_sources.skimage_photos.enabled=false,"
              f"data_prep.train_sources.set.url={server.url}/set.tar")

    # Kedro's log handler wraps lines at the terminal width: compare with spaces collapsed
    output = " ".join(kedro_run_fails(workdir, "--pipeline=data_prep", params).split())
    assert "is not usable" in output and "deleted" in output and "run again" in output
    assert "place it at data/01_raw/downloads/set/set.tar;" in output  # docs/data.md's layout
    assert ("web page" if bad == "web page" else "end-of-archive marker") in output
    downloads = workdir / "data" / "01_raw" / "downloads" / "set"
    assert not downloads.exists() or list(downloads.iterdir()) == []  # nothing kept or recorded

    server.files["/set.tar"] = good  # the server sends the whole archive: the retry works
    kedro_run(workdir, "--pipeline=data_prep", params)
    assert _latest_report(workdir)["train"]["set"]["kept"] == 8
    assert (downloads / "set.tar.sha256").is_file()


def test_kedro_run_writes_a_store_that_opens_and_trains(tiny_quickstart):
    workdir, _ = tiny_quickstart  # `kedro run --env=quickstart` with tiny training settings
    store = TrainingStore(workdir / "data" / "03_primary" / "train_store")
    report_file, = (workdir / "data" / "08_reporting" / "data_prep_report.json").glob("*/*")
    assert json.loads(report_file.read_text())["train"]["skimage_photos"]["tiles"] == len(store)
    assert list((workdir / "data" / "06_models" / "generator_gan.pt").glob("*/*.pt"))


def test_every_file_of_a_source_is_kept_or_reported_through_kedro_run(tmp_path, monkeypatch):
    """Files of types data_prep does not read, a 249-byte name (Linux allows 255) and ``x.jpg``
    beside a folder ``x.png/`` are kept or skipped with the reason, never the end of the run.
    The project and the source folder have a space, a comma and non-ASCII letters; --params
    splits at commas, so the source comes in a --config file, as docs/configuration.md says."""
    workdir = kedro_project(tmp_path / "projet été, v2", monkeypatch)
    source = tmp_path / "mes photos, 2024 ☀"
    long_name = "é" * 122 + "x.png"  # 249 bytes, cut mid-character by the temporary name
    for seed, name in enumerate(["a.png", long_name, "x.jpg", "x.png/inner.png"]):
        write_image(source / name, (100, 100), seed=seed)
    write_image(source / "holiday.gif", (100, 100))  # an image of a type data_prep does not read
    (source / "IMG_0001.HEIC").write_bytes(b"\0\0\0\x18ftypheic")
    (source / "notes.txt").write_text("not an image")
    config = tmp_path / "run.yml"
    params = {"data_prep": {"train_sources": {"skimage_photos": {"enabled": False},
                                              "mine": {"path": str(source)}}}}
    config.write_text(yaml.safe_dump({"run": {"pipeline": "data_prep", "params": params}},
                                     allow_unicode=True))

    kedro_run(workdir, f"--config={config}")

    entry = _report(workdir)["train"]["mine"]
    skipped = {s["file"]: s["reason"] for s in entry["skipped"]}
    assert sorted(skipped) == sorted(str(source / name) for name in (
        "holiday.gif", "IMG_0001.HEIC", "notes.txt", "x.jpg"))
    assert skipped[str(source / "notes.txt")] == NOT_AN_IMAGE
    assert "folder of other images" in skipped[str(source / "x.jpg")]
    assert (entry["found"], entry["kept"]) == (7, 3)
    hr = workdir / "data" / "02_intermediate" / "train_hr" / "mine"
    written = sorted(p.relative_to(hr).as_posix() for p in hr.rglob("*"))
    assert written == sorted(["a.png", long_name, "x.png", "x.png/inner.png"])
    assert len(TrainingStore(workdir / "data" / "03_primary" / "train_store").images) == 3


def test_the_quickstart_bicubic_row_is_the_published_figure(tiny_quickstart):
    """The quickstart note's "Bicubic is 30.73 dB" (benchmarks/results): the bicubic Y-PSNR row of
    the quickstart's evaluation, which follows from data_prep's pairs alone (mod-crop, MATLAB-exact
    LR) and the metric. The figure is published to two decimals, so it must round to them: within
    half the last digit."""
    workdir, _ = tiny_quickstart
    path, = (workdir / "data" / "08_reporting" / "evaluation_summary.json").glob("*/*")
    bicubic = json.loads(path.read_text())["skimage_heldout"]["bicubic"]
    assert bicubic["images"] == 2
    assert bicubic["psnr_y"] == pytest.approx(30.73, abs=0.005)


def test_a_second_data_prep_at_once_is_refused_before_writing(quickstart_run, tmp_path,
                                                              monkeypatch):
    """Two at once deleted each other's temporary store. The test holds the lock a running
    data_prep holds (certain, not timing-dependent): the second run stops, writing nothing."""
    lock = FileLock(quickstart_run / "data" / "03_primary" / "train_store.lock")
    lock.acquire(timeout=0)  # free again after the fixture's run (released at its end)
    lock.release()
    workdir = kedro_project(tmp_path / "project", monkeypatch)
    with FileLock(workdir / "data" / "03_primary" / "train_store.lock", timeout=0):
        output = kedro_run_fails(workdir, "--pipeline=data_prep")
    assert "another data_prep run is writing this project's data now" in output
    assert "train_store.lock" in output and "wait for it to finish" in output
    assert sorted(p.name for p in (workdir / "data").rglob("*")) == ["03_primary",
                                                                       "train_store.lock"]


def test_an_archive_bomb_is_refused_before_extraction_through_kedro_run(tmp_path, monkeypatch,
                                                                       server):
    """A 4 kB download that would extract to 4 MB (1000x; data_prep.archive_limits.max_ratio
    is 100): the run stops naming the setting, and nothing is extracted."""
    workdir = kedro_project(tmp_path / "project", monkeypatch)
    server.files["/bomb.tar.gz"] = tar_bytes({"HR/zeros.png": bytes(4_000_000)}, "w:gz")
    output = kedro_run_fails(workdir, "--pipeline=data_prep",
                             f"--params={OFF},data_prep.eval_sets.bomb.url={server.url}/bomb.tar.gz")
    assert "Refusing to extract" in output and "bomb.tar.gz" in output
    assert "data_prep.archive_limits.max_ratio=100" in output and "raise the limit" in output
    assert not (workdir / "data" / "01_raw" / "extracted").exists() or not any(
        (workdir / "data" / "01_raw" / "extracted").iterdir())


def test_mlflow_setup_of_a_fresh_project_waits_for_another_run(tmp_path, monkeypatch):
    """Two runs starting at once in a fresh project raced in MLflow's database migrations.
    The test holds the lock a starting run holds: a run waits on it (seen from the line it
    logs when it finds the lock taken, not from timing) without touching mlflow.db, then sets
    it up."""
    workdir = kedro_project(tmp_path / "project", monkeypatch, tracking_store=False)
    lock, log = workdir / "mlflow.db.lock", tmp_path / "run.log"
    with FileLock(lock, timeout=0):
        child = subprocess.Popen(
            [sys.executable, "-m", "kedro", "run", "--env=quickstart", "--pipeline=data_prep",
             "--params=data_prep.min_sise=1"],  # stops after the setup: invalid parameters
            cwd=workdir, env={**os.environ, **QUIET_ENV, "COLUMNS": "200"}, stdout=log.open("w"),
            stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 600  # a hung child fails the test, never hangs it
        try:
            while "Waiting for another run's MLflow setup" not in " ".join(log.read_text().split()):
                assert child.poll() is None, log.read_text()[-4000:]
                assert time.monotonic() < deadline, "the run never reached its MLflow setup"
                time.sleep(0.1)
            assert not (workdir / "mlflow.db").exists()
        except BaseException:
            child.kill()
            raise
    child.wait(timeout=600)
    output = log.read_text()
    assert "data_prep.min_sise: unknown key" in output
    assert (workdir / "mlflow.db").is_file()
