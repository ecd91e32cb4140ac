"""The imports of src/srgan_pipeline run one way: no circles; settings and name tables lowest.

The graph is read from the code with ``ast`` (every ``import``, also inside functions), not by
importing it: an edge A -> B means module A names module B in an import, where ``from x import
y`` names ``x.y`` when that is a module of the package and ``x`` otherwise. A package's
``__init__`` is the module ``x`` itself; importing ``x.y`` does not count as importing ``x``
(every submodule would otherwise be in a circle with a package that re-exports it).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from conftest import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "src" / "srgan_pipeline"
# The bottom layer: the parameter schemas, and the tables and sizes they check against.
TABLES = ("srgan_pipeline.names", "srgan_pipeline.architecture")
SCHEMAS = ("srgan_pipeline.params",)
BOTTOM = TABLES + SCHEMAS


def module_files() -> dict[str, Path]:
    """Every module of the package by dotted name (``srgan_pipeline.params`` for its
    ``__init__.py``)."""
    files = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


MODULES = module_files()


def imported_names(module: str) -> set[str]:
    """The dotted names ``module`` imports, project and third-party, resolved as Python does."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x, from ..a import b
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                child = f"{base}.{alias.name}"
                names.add(child if child in MODULES else base)
    return names


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of the package it imports."""
    return {module: {name for name in imported_names(module) if name in MODULES}
            for module in MODULES}


def third_party(module: str) -> set[str]:
    """The top-level names of what ``module`` imports from outside the package."""
    return {name.split(".")[0] for name in imported_names(module)
            if name.split(".")[0] != "srgan_pipeline"}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One import path per circle (``[a, b, a]``) through each of :func:`tangles`."""
    return [cycle_through(graph, component) for component in tangles(graph)]


def tangles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components (Tarjan) of more than one module, and the modules
    that import themselves: each module of one reaches every other through imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components = []

    def visit(node: str) -> None:  # the package has ~100 modules: recursion is shallow
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                component.add(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def cycle_through(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """The shortest import path from the component's first module back to itself."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(graph[node] & component):
                if target == start:
                    return [*paths[node], start]
                if target not in paths:
                    paths[target] = [*paths[node], target]
                    following.append(target)
        frontier = following
    raise AssertionError(f"no cycle in {component}")  # a component always has one


def reachable(graph: dict[str, set[str]], starts: list[str]) -> set[str]:
    seen, todo = set(starts), list(starts)
    while todo:
        for target in graph[todo.pop()] - seen:
            seen.add(target)
            todo.append(target)
    return seen


def in_layer(module: str, layer: tuple[str, ...]) -> bool:
    return any(module == top or module.startswith(f"{top}.") for top in layer)


def short(module: str) -> str:
    return module.removeprefix("srgan_pipeline.")


def test_no_import_circle():
    graph = import_graph()
    found = [" -> ".join(map(short, cycle_through(graph, component)))
             + (f" (in a circle of {len(component)}: {', '.join(sorted(map(short, component)))})"
                if len(component) > 2 else "")
             for component in tangles(graph)]
    assert not found, "import circles in src/srgan_pipeline:\n" + "\n".join(found)


def test_circles_are_found_and_reported_as_import_paths():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e"}, "f": {"d"}}
    assert circles(graph) == [["a", "b", "c", "a"], ["e", "e"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_from_imports_name_the_submodule_or_the_package():
    # ``from srgan_pipeline import tracking`` (a module) and ``from srgan_pipeline.params
    # import validate_params`` (a name in the package's __init__): the two kinds of edge.
    assert "srgan_pipeline.tracking" in import_graph()["srgan_pipeline.hooks"]
    assert "srgan_pipeline.params" in import_graph()["srgan_pipeline.hooks"]
    assert "srgan_pipeline.params.rules" in import_graph()["srgan_pipeline.params"]


def test_settings_and_name_tables_import_nothing_above_them():
    graph = import_graph()
    bottom = [module for module in MODULES if in_layer(module, BOTTOM)]
    above = {short(module): sorted(short(t) for t in graph[module] if not in_layer(t, BOTTOM))
             for module in bottom}
    assert {module: names for module, names in above.items() if names} == {}
    # The schemas take pydantic; the tables and sizes nothing but the standard library.
    allowed = {"pydantic"}
    libraries = {short(module): sorted(third_party(module) - set(sys.stdlib_module_names)
                                       - (allowed if in_layer(module, SCHEMAS) else set()))
                 for module in bottom}
    assert {module: names for module, names in libraries.items() if names} == {}
    assert [short(table) for table in TABLES if graph[table]] == []


def test_importing_the_settings_loads_no_torch_no_mlflow_no_kedro_and_no_domain_code():
    code = "import json, sys, srgan_pipeline.params; print(json.dumps(sorted(sys.modules)))"
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True,
                                       text=True, check=True, cwd=PROJECT_ROOT).stdout)
    heavy = sorted({name.split(".")[0] for name in loaded} & {"torch", "mlflow", "kedro",
                                                               "numpy", "pandas", "PIL"})
    assert heavy == []
    project = [name for name in loaded if name.startswith("srgan_pipeline.")]
    assert project and all(in_layer(name, BOTTOM) for name in project), project


def test_training_imports_no_kedro_and_no_mlflow():
    # training/ runs the loops and the job (also outside Kedro, in each rank's process): the
    # pipelines' nodes are what tie it to Kedro and MLflow. Also through project modules.
    graph = import_graph()
    training = [module for module in MODULES if in_layer(module, ("srgan_pipeline.training",))]
    uses = {short(module): sorted(third_party(module) & {"kedro", "kedro_mlflow", "mlflow"})
            for module in reachable(graph, training)}
    assert {module: names for module, names in uses.items() if names} == {}
