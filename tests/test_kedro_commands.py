"""Kedro's own command-line options, mistyped as a user would: a clear error naming what to type,
and nothing run (no data written, no MLflow store created)."""

from __future__ import annotations

from conftest import kedro_project, kedro_run_fails


def test_load_versions_without_a_version_names_the_form_to_type(tmp_path, monkeypatch):
    """`--load-versions=<dataset>` with no `:<version>` (a bare `NoneType: None` in some Kedro
    releases) must say which form Kedro expects, before any node runs."""
    workdir = kedro_project(tmp_path / "project", monkeypatch, tracking_store=False)
    output = kedro_run_fails(workdir, "--pipelines=evaluation",
                             "--load-versions=generator_pretrained")
    assert "dataset_name:YYYY-MM-DDThh.mm.ss.sssZ" in output, output[-2000:]
    assert "generator_pretrained" in output
    assert "NoneType: None" not in output
    assert not (workdir / "data").exists() and not (workdir / "mlflow.db").exists()
