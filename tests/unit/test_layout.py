"""The package's layers as DESIGN.md draws them, read from the source with ``ast``: what ``core`` may import, no
import cycles, the dev tools and the Modal settings kept out of the runtime's way, each error raised by its own layer,
and ``dvc.yaml``'s code deps equal to what the build's code digest hashes and what training imports."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import eegcache
from eegcache.core import process
from tests.conftest import REPO

SRC = REPO / "src"
CORE_ALLOWED = {"numpy", "scipy", "edfio", "eegcache.core", "eegcache.errors"}
TRAINING = "eegcache.train.baseline"  # what the DVC stage `train` runs (`eegcache train`)


def _modules() -> dict[str, Path]:
    """Every module of the package in this tree: dotted name -> file."""
    modules = {}
    for path in sorted((SRC / "eegcache").rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


MODULES = _modules()


def _imports(name: str) -> set[str]:
    """Every name ``name`` imports anywhere in its file (functions included), as dotted module names: for
    ``from a.b import c`` both ``a.b`` and ``a.b.c`` (only one of them is a module where ``c`` is not)."""
    path = MODULES[name]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0 and node.module, f"{path}:{node.lineno}: the package imports absolutely"
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _package_imports(name: str) -> set[str]:
    """The package's modules that ``name`` imports, with the packages above each (importing runs their
    ``__init__``)."""
    direct = {m for m in _imports(name) if m in MODULES and m != name}
    return direct | {".".join(m.split(".")[:i]) for m in direct for i in range(1, m.count(".") + 1)}


def import_closure(name: str) -> list[str]:
    """Files of every module of the package that importing ``name`` runs, relative to the repo, sorted."""
    seen, todo = set(), [name, *(".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1))]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(_package_imports(module))
    return sorted(MODULES[m].relative_to(REPO).as_posix() for m in seen)


def _stage_deps(stage: str) -> list[str]:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][stage]["deps"]


def _files_under(dep: str) -> set[str]:
    """The files DVC hashes for a dep path (a folder: every file below it, but for ``.dvcignore``'s __pycache__)."""
    path = REPO / dep
    if path.is_file():
        return {dep}
    return {p.relative_to(REPO).as_posix() for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def test_core_imports_only_core_errors_numpy_scipy_edfio_and_the_standard_library():
    for name in (m for m in MODULES if m.startswith("eegcache.core")):
        for imported in _imports(name):
            top = imported.split(".")[0]
            if top == "eegcache":
                allowed = any(imported == a or imported.startswith(f"{a}.") for a in CORE_ALLOWED)
            else:
                allowed = top in CORE_ALLOWED or top in sys.stdlib_module_names or top == "__future__"
            assert allowed, f"{name} imports {imported}; core imports only core, errors, numpy, scipy, edfio, stdlib"


def test_the_package_has_no_import_cycles():
    graph = {name: _package_imports(name) for name in MODULES}
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = "open"
        for imported in sorted(graph[name]):
            assert state.get(imported) != "open", f"import cycle: {' -> '.join([*path, name, imported])}"
            if imported not in state:
                visit(imported, [*path, name])
        state[name] = "done"

    for name in MODULES:
        if name not in state:
            visit(name, [])


def test_build_cache_depends_on_exactly_the_files_the_code_digest_hashes():
    deps = _stage_deps("build_cache")
    code_deps = [d for d in deps if not d.startswith("${")]
    assert set(deps) - set(code_deps) == {"${data.raw_dir}"}
    in_dvc = set().union(*(_files_under(d) for d in code_deps))
    digested = {"src/" + p.relative_to(Path(eegcache.__file__).parents[1]).as_posix() for p in process.code_files()}
    assert in_dvc == digested
    assert "src/eegcache/core/process.py" in digested and "src/eegcache/build.py" not in digested


def test_code_digest_covers_every_source_file_of_core():
    core = Path(process.__file__).parent
    assert process.code_files() == sorted(core.rglob("*.py"))
    assert {p.name for p in process.code_files()} >= {"store.py", "signal.py", "process.py", "__init__.py"}


def test_train_depends_on_exactly_the_modules_train_imports():
    deps = _stage_deps("train")
    code_deps = [d for d in deps if not d.startswith("${")]
    assert set(deps) - set(code_deps) == {"${build.out_dir}"}
    assert len(code_deps) == len(set(code_deps))
    assert sorted(code_deps) == import_closure(TRAINING)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "eegcache.core.store",
            [
                "src/eegcache/__init__.py",
                "src/eegcache/core/__init__.py",
                "src/eegcache/core/store.py",
                "src/eegcache/errors.py",
            ],
        ),
        ("eegcache.errors", ["src/eegcache/__init__.py", "src/eegcache/errors.py"]),
    ],
)
def test_import_closure_follows_imports_and_the_packages_above_them(name, expected):
    assert import_closure(name) == expected


def test_import_closure_matches_what_python_imports():
    """The ``ast`` reading agrees with the interpreter: a fresh process importing the baseline trainer loads exactly
    those of the package's modules."""
    code = f"import sys, {TRAINING}; print('\\n'.join(sorted(m for m in sys.modules if m.startswith('eegcache'))))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={"PYTHONPATH": str(SRC)}
    ).stdout.split()
    assert sorted(MODULES[m].relative_to(REPO).as_posix() for m in loaded) == import_closure(TRAINING)


def _strings(name: str) -> set[str]:
    tree = ast.parse(MODULES[name].read_text())
    return {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


@pytest.mark.parametrize(
    ("what", "owner", "found_in"),
    [
        (
            "imports DVC",
            "eegcache.versions.dvc",
            lambda m: any(i == "dvc" or i.startswith("dvc.") for i in _imports(m)),
        ),
        ("runs the dvc or git command", "eegcache.versions.dvc", lambda m: bool({"dvc", "git"} & _strings(m))),
        (
            "starts SeaweedFS",
            "eegcache.devtools.s3local",
            lambda m: any(s == "mini" or s.endswith("/weed") for s in _strings(m)),
        ),
        ("imports modal", None, lambda m: any(i == "modal" or i.startswith("modal.") for i in _imports(m))),
        (
            "imports torch (an optional extra)",
            "eegcache.torch",
            lambda m: any(i.split(".")[0] == "torch" for i in _imports(m)),
        ),
    ],
)
def test_each_adapter_stands_alone(what, owner, found_in):
    assert [name for name in MODULES if found_in(name)] == ([owner] if owner else []), what


def test_no_module_is_over_400_lines():
    assert {name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > 400} == {}


def test_the_dev_tools_are_imported_by_the_cli_alone():
    """The demo corpus and the local S3 server are development tools: nothing of the runtime (what the Modal image
    holds) imports them, only the CLI and the dev tools themselves."""
    users = {name for name in MODULES if any(m.startswith("eegcache.devtools") for m in _package_imports(name))}
    assert {name for name in users if not name.startswith("eegcache.devtools")} == {"eegcache.cli"}


def test_the_configuration_road_knows_no_modal_settings():
    """``config`` keeps the ``modal`` group as a mapping: the settings' schema is the Modal app's, so nothing that
    builds or trains (the DVC stages' deps) changes when it does."""
    assert not [f for f in import_closure("eegcache.config") if "modal" in f]
    assert "src/eegcache/modal_settings.py" not in import_closure(TRAINING)


def _raised(name: str) -> set[str]:
    """Names of the exception classes ``name`` raises (``raise X(...)``, ``raise mod.X(...)``)."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
            func = node.exc.func
            found.add(func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", ""))
    return found


def _error_classes() -> dict[str, str]:
    """Exception classes defined outside ``errors`` (a layer's own) -> the module that defines them."""
    owners = {}
    for name in MODULES:
        for node in ast.parse(MODULES[name].read_text()).body:
            bases = {getattr(b, "id", getattr(b, "attr", "")) for b in getattr(node, "bases", [])}
            if isinstance(node, ast.ClassDef) and (bases & {"Exception"} or any(b.endswith("Error") for b in bases)):
                owners[node.name] = name
    return {cls: owner for cls, owner in owners.items() if owner != "eegcache.errors"}


def test_each_error_type_is_raised_by_its_own_layer():
    """A layer's own error (the remote's, a fetch's, the lockfile's) is raised in the module that defines it only:
    a volume or a mount never reports "remote 'storage'", a parse error of dvc.lock is not a remote's."""
    owners = _error_classes()
    assert {"RemoteError", "FetchError", "ObjectError", "LockfileError", "UnsafeName"} <= owners.keys()
    strays = {(name, cls) for name in MODULES for cls in _raised(name) if cls in owners and owners[cls] != name}
    assert strays == set()
