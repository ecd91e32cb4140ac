"""conf/base without network, run as docs/data.md "The faces source" and "Providing the data
sets offline" type it: `kedro run` in a new process, offline by construction (conftest.offline_env
refuses every non-loopback connection, and the archive URL is a closed local port)."""

import hashlib
import io
import json
import re

import numpy as np
import pytest
from conftest import closed_port_url, kedro, kedro_project, offline_env, zip_bytes
from PIL import Image

from srgan_pipeline.training_store import TrainingStore

FACES = "data_prep.train_sources.faces"


def png(seed, size=(192, 160)):
    array = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def output(done):
    # rich wraps long log lines: compare with the line breaks and their indentation removed
    return re.sub(r"\s*\n\s*", " ", done.stdout + done.stderr)


@pytest.fixture
def base_project(tmp_path, monkeypatch):
    workdir = kedro_project(tmp_path / "project", monkeypatch)
    env, log = offline_env(tmp_path / "offline")
    return workdir, env, log


def test_kedro_run_on_base_stops_at_the_faces_source_before_any_download(base_project):
    workdir, env, log = base_project
    done = kedro(workdir, "run", env=env, timeout=300)
    text = output(done)
    assert done.returncode != 0, text[-3000:]
    assert f"{FACES}: this source has no location" in text, text[-3000:]
    assert f"{FACES}.path=" in text and f"{FACES}.enabled=false" in text
    downloads = workdir / "data" / "01_raw" / "downloads"
    assert not downloads.exists() or not any(downloads.iterdir())
    assert log.read_text() == ""  # not even an attempt to reach a server


def test_an_unreachable_archive_names_the_file_to_place_and_a_placed_file_is_used(
        base_project, tmp_path):
    workdir, env, log = base_project
    archive = zip_bytes({f"DIV2K_train_HR/{n:04d}.png": png(n) for n in (1, 2)})
    eval_folder = tmp_path / "eval"  # the extracted benchmark archive's layout (images_in)
    (eval_folder / "benchmark" / "Urban100" / "HR").mkdir(parents=True)
    (eval_folder / "benchmark" / "Urban100" / "HR" / "x.png").write_bytes(png(3))
    params = ",".join([
        f"{FACES}.enabled=false", "data_prep.train_sources.flickr2k.enabled=false",
        f"data_prep.train_sources.div2k.url={closed_port_url('DIV2K_train_HR.zip')}",
        f"data_prep.train_sources.div2k.size={len(archive)}",
        f"data_prep.train_sources.div2k.sha256={hashlib.sha256(archive).hexdigest()}",
        f"data_prep.eval_sets.urban100.path={eval_folder}",  # a folder: no second download
        "data_prep.tiles.size=96", "data_prep.tiles.stride=96", "data_prep.show_progress=false",
    ])
    done = kedro(workdir, "run", "--pipelines=data_prep", f"--params={params}", env=env,
                 timeout=300)
    text = output(done)
    assert done.returncode != 0, text[-3000:]
    place, = set(re.findall(r"place it at (\S+?);", text))
    expected = workdir / "data" / "01_raw" / "downloads" / "div2k" / "DIV2K_train_HR.zip"
    assert (workdir / place).resolve() == expected.resolve(), place
    assert not expected.exists()

    expected.parent.mkdir(parents=True, exist_ok=True)
    expected.write_bytes(archive)
    done = kedro(workdir, "run", "--pipelines=data_prep", f"--params={params}", env=env,
                 timeout=300)
    assert done.returncode == 0, output(done)[-3000:]
    assert expected.read_bytes() == archive  # verified and kept, not downloaded again
    report, = (workdir / "data" / "08_reporting" / "data_prep_report.json").glob("*/*.json")
    report = json.loads(report.read_text())
    # 192x160: 2 columns x 2 rows of 96 px tiles (the last row flush with the border)
    assert report["train"]["div2k"]["tiles"] == 2 * (2 * 2)
    store = TrainingStore(workdir / "data" / "03_primary" / "train_store")
    tiles = sorted(store.tile_key(i) for i in range(len(store)))
    assert [t.split("_s")[0] for t in tiles] == ["div2k/0001"] * 4 + ["div2k/0002"] * 4
    assert log.read_text() == ""


def test_a_placed_file_that_does_not_match_is_refused_and_kept(base_project):
    workdir, env, _ = base_project
    archive = zip_bytes({"DIV2K_train_HR/0001.png": png(1)})
    placed = workdir / "data" / "01_raw" / "downloads" / "div2k" / "DIV2K_train_HR.zip"
    placed.parent.mkdir(parents=True)
    placed.write_bytes(archive[:-1] + b"x")  # same size, other bytes
    params = ",".join([
        f"{FACES}.enabled=false", "data_prep.train_sources.flickr2k.enabled=false",
        f"data_prep.train_sources.div2k.url={closed_port_url('DIV2K_train_HR.zip')}",
        f"data_prep.train_sources.div2k.size={len(archive)}",
        f"data_prep.train_sources.div2k.sha256={hashlib.sha256(archive).hexdigest()}",
        "data_prep.eval_sets.urban100.enabled=false",
    ])
    done = kedro(workdir, "run", "--pipelines=data_prep", f"--params={params}", env=env,
                 timeout=300)
    text = output(done)
    assert done.returncode != 0
    assert "does not match" in text and "DIV2K_train_HR.zip" in text, text[-3000:]
    assert placed.read_bytes() == archive[:-1] + b"x"  # never deleted
