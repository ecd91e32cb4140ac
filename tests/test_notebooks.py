"""The notebooks run top to bottom after the quickstart run, and are stored without outputs.

Executing them needs nbconvert, ipykernel and matplotlib (the `test` extra): without them the
tests fail, saying what to install, rather than skip.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys

import mlflow
import pytest
from conftest import PROJECT_ROOT, QUIET_ENV

NOTEBOOK_DIR = PROJECT_ROOT / "notebooks"
NOTEBOOKS = ("01_explore_data.ipynb", "02_compare_models.ipynb")

MISSING = [name for name in ("nbconvert", "ipykernel", "matplotlib")
           if importlib.util.find_spec(name) is None]


def mlflow_runs(workdir):
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    return len(client.search_runs([client.get_experiment_by_name("srgan_pipeline").experiment_id]))


def cells(path):
    notebook = json.loads(path.read_text(encoding="utf-8"))
    return notebook, [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_the_stored_notebooks_have_no_outputs(name):
    notebook, code = cells(NOTEBOOK_DIR / name)
    assert notebook["nbformat"] == 4 and code
    dirty = [i for i, cell in enumerate(code) if cell["outputs"] or cell["execution_count"]]
    assert not dirty, f"{name}: code cells {dirty} keep outputs; strip them before committing"


@pytest.fixture(scope="module")
def project(tiny_quickstart):
    """The shared tiny quickstart project (conftest), with the notebooks in its notebooks/.

    The notebooks only read: no file of the run is changed and no MLflow run is added.
    """
    workdir, _ = tiny_quickstart
    (workdir / "notebooks").mkdir(exist_ok=True)
    for name in NOTEBOOKS:
        shutil.copy(NOTEBOOK_DIR / name, workdir / "notebooks" / name)
    return workdir


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_the_notebook_runs_top_to_bottom(project, tmp_path, name):
    assert not MISSING, (f"executing notebooks needs {', '.join(MISSING)}: "
                         "pip install -e '.[test]'")
    # The kernel starts in the notebook's folder; KEDRO_ENV is what `kedro jupyter lab --env`
    # sets, so %load_ext kedro.ipython loads the quickstart's parameters.
    runs = mlflow_runs(project)
    env = {**os.environ, **QUIET_ENV, "KEDRO_ENV": "quickstart",
           "PYDEVD_DISABLE_FILE_VALIDATION": "1"}  # debugpy's frozen-modules warning
    done = subprocess.run(
        [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
         "--ExecutePreprocessor.timeout=300", "--ExecutePreprocessor.kernel_name=python3",
         "--output-dir", str(tmp_path), str(project / "notebooks" / name)],
        cwd=project, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-6000:]

    _, code = cells(tmp_path / name)
    outputs = [output for cell in code for output in cell["outputs"]]
    assert not [o for o in outputs if o["output_type"] == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 3
    # Relative paths of the configuration resolve against the project root, not notebooks/, and
    # the shared store keeps its one run (tests/e2e counts them).
    assert not (project / "notebooks" / "mlflow.db").exists()
    assert mlflow_runs(project) == runs
