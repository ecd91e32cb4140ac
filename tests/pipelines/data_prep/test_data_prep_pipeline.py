"""data_prep through Kedro's session on the quickstart environment, in a scratch folder."""

import hashlib
import json

import pytest
from conftest import kedro_project
from kedro.framework.session import KedroSession

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


def test_rerun_on_unchanged_inputs_writes_identical_files(quickstart_run, monkeypatch):
    before = digests(quickstart_run / "data")
    run_data_prep(quickstart_run, monkeypatch)
    assert digests(quickstart_run / "data") == before


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


def test_kedro_run_writes_a_store_that_opens_and_trains(tiny_quickstart):
    workdir, _ = tiny_quickstart  # `kedro run --env=quickstart` with tiny training settings
    store = TrainingStore(workdir / "data" / "03_primary" / "train_store")
    report_file, = (workdir / "data" / "08_reporting" / "data_prep_report.json").glob("*/*")
    assert json.loads(report_file.read_text())["train"]["skimage_photos"]["tiles"] == len(store)
    assert list((workdir / "data" / "06_models" / "generator_gan.pt").glob("*/*.pt"))
