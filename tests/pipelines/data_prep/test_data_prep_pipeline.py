"""data_prep through Kedro's session on the quickstart environment, in a scratch folder."""

import hashlib
import json

import pytest
from conftest import copy_project, kedro_project
from kedro.framework.session import KedroSession


def run_data_prep(workdir, monkeypatch, runtime_params=None):
    project = kedro_project(workdir, monkeypatch)
    with KedroSession.create(project_path=project, env="quickstart",
                             runtime_params=runtime_params) as session:
        session.run(pipeline_names=["data_prep"])


def digests(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*.png"))}


@pytest.fixture(scope="module")
def quickstart_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("quickstart")
    with pytest.MonkeyPatch.context() as monkeypatch:
        run_data_prep(workdir, monkeypatch)
    return workdir


def test_quickstart_writes_tiles_and_eval_pairs(quickstart_run):
    data = quickstart_run / "data"
    hr_tiles = sorted((data / "03_primary" / "train_hr_tiles").rglob("*.png"))
    lr_tiles = sorted((data / "03_primary" / "train_lr_tiles").rglob("*.png"))
    assert len(hr_tiles) > 100
    assert [p.name for p in hr_tiles] == [p.name for p in lr_tiles]
    eval_dir = data / "05_model_input" / "eval" / "skimage_heldout"
    assert sorted(p.name for p in (eval_dir / "HR").iterdir()) == ["chelsea.png", "rocket.png"]
    assert sorted(p.name for p in (eval_dir / "LR_x4").iterdir()) == ["chelsea.png", "rocket.png"]
    report_file, = (data / "08_reporting" / "data_prep_report.json").glob("*/data_prep_report.json")
    report = json.loads(report_file.read_text())
    assert report["train"]["skimage_photos"]["tiles"] == len(hr_tiles)
    assert report["eval"]["skimage_heldout"]["pairs"] == 2
    assert report["skipped_total"] == 0


def test_rerun_on_unchanged_inputs_writes_identical_files(quickstart_run, tmp_path,
                                                         monkeypatch):
    workdir = copy_project(quickstart_run, tmp_path / "project")  # the rerun adds a report
    before = digests(workdir / "data")
    run_data_prep(workdir, monkeypatch)
    assert digests(workdir / "data") == before


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
