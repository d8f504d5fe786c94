"""The house rules of DESIGN.md's parts table, checked on the source: the core imports nothing outside the core and
``errors``; only ``remote`` runs DVC, only ``s3local`` starts SeaweedFS, only the Modal app imports ``modal``; no
module over ~400 lines; no import cycles inside the package."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "src" / "eegcache"
MODULES = {
    ".".join(("eegcache", *path.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__"): path
    for path in sorted(PACKAGE.rglob("*.py"))
}
CORE_LIBRARIES = {"numpy", "scipy", "edfio"}


def imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth (function-local imports included), absolute names."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names if f"{node.module}.{alias.name}" in MODULES}
    return found


def strings(path: Path) -> set[str]:
    return {n.value for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def test_the_core_is_there_and_imports_only_the_core_errors_and_numeric_libraries():
    core = {name: path for name, path in MODULES.items() if name.startswith("eegcache.core.")}
    assert {name.rsplit(".", 1)[1] for name in core} >= {"montage", "corpus", "edf", "signal", "store", "process"}
    for name, path in core.items():
        for module in imports(path):
            top = module.split(".")[0]
            allowed = (
                top in sys.stdlib_module_names or top in CORE_LIBRARIES or module == "eegcache.errors"
                or module == "eegcache.core" or module.startswith("eegcache.core.")
            )  # fmt: skip
            assert allowed, f"{name} imports {module}"


@pytest.mark.parametrize(
    ("what", "owner", "found_in"),
    [
        ("imports DVC", "eegcache.remote", lambda p: any(m == "dvc" or m.startswith("dvc.") for m in imports(p))),
        ("runs the dvc command", "eegcache.remote", lambda p: "dvc" in strings(p)),
        ("starts SeaweedFS", "eegcache.s3local", lambda p: any("weed" in s.split() or s == "weed" for s in strings(p))),
        ("imports modal", None, lambda p: any(m == "modal" or m.startswith("modal.") for m in imports(p))),
    ],
)
def test_each_adapter_alone(what, owner, found_in):
    assert [name for name, path in MODULES.items() if found_in(path)] == ([owner] if owner else []), what


def test_the_modal_app_is_the_only_place_modal_is_imported():
    app = REPO / "deploy" / "modal" / "app.py"
    assert "modal" in imports(app)
    assert not [p for p in (REPO / "tests").rglob("*.py") if "modal" in imports(p) and "test_modal" not in p.name]


def test_no_module_over_400_lines():
    assert {name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > 400} == {}


def test_no_import_cycles_in_the_package():
    graph = {name: {m for m in imports(path) if m in MODULES and m != name} for name, path in MODULES.items()}
    graph = {name: {m for m in deps if not name.startswith(f"{m}.")} for name, deps in graph.items()}  # a package's __init__
    state: dict[str, int] = {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = 1
        for dep in sorted(graph[name]):
            if state.get(dep) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*trail[trail.index(dep):], dep]))
            if dep not in state:
                visit(dep, [*trail, dep])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
