"""The name tables: each defined once, in names.py, and read from there by the code that acts."""

from __future__ import annotations

import ast

import pytest
from conftest import PROJECT_ROOT

from srgan_pipeline import names
from srgan_pipeline.names import is_model_uri

PACKAGE = PROJECT_ROOT / "src" / "srgan_pipeline"
TABLES = [name for name in vars(names) if name.isupper()]


def test_each_table_is_assigned_in_names_py_only():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "names.py" and path.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            targets = (node.targets if isinstance(node, ast.Assign)
                       else [node.target] if isinstance(node, ast.AnnAssign) else [])
            found += [f"{path.relative_to(PACKAGE)}: {target.id}" for target in targets
                      if isinstance(target, ast.Name) and target.id in TABLES]
    assert found == []


def test_the_code_that_acts_on_a_name_reads_the_same_table():
    from srgan_pipeline import checkpoints, devices, evaluation, inference, sources
    from srgan_pipeline.models import perceptual

    assert inference.RUNTIMES is names.RUNTIMES
    assert devices.PRECISIONS is names.PRECISIONS
    assert devices.DEVICE_TYPES is names.DEVICE_TYPES
    assert checkpoints.GENERATOR_DATASETS is names.GENERATOR_DATASETS
    assert evaluation.METRICS is names.METRICS
    assert sources.BUILTIN_PHOTOS is names.BUILTIN_PHOTOS
    assert perceptual.VGG19_LAYERS is names.VGG19_LAYERS
    assert names.MODELS == ("bicubic", "srresnet", "srgan")


@pytest.mark.parametrize("value, expected", [
    ("models:/srgan_pipeline_generator@champion", True),
    ("models:/srgan_pipeline_generator/3", True),
    ("models:/m-0123456789abcdef", True),
    ("runs:/0123456789abcdef0123456789abcdef/srgan_generator", True),
    ("srgan", False),
    ("models:/", False),
    ("models:/name@", False),
    ("runs:/not-a-run-id/x", False),
])
def test_model_uris(value, expected):
    assert is_model_uri(value) is expected
