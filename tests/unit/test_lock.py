"""One lock, two places: ``requirements.lock`` (the runtime pins the Modal image installs) and
``requirements-dev.lock`` (plus the test and bench extras, what ``make venv`` installs) are generated from
``pyproject.toml`` by ``make lock``; here they are checked against its ranges, each other and this venv."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata

import pytest
from packaging.requirements import Requirement

from tests.conftest import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(lock: str) -> dict[str, str]:
    """name -> pinned version of every ``name==version`` line of the lock; fails on any other requirement form."""
    found = {}
    for line in (REPO / lock).read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, version = line.strip().partition("==")
        assert sep and re.fullmatch(r"[A-Za-z0-9._-]+", name) and re.fullmatch(r"[0-9A-Za-z.+!-]+", version), line
        found[_name(name)] = version
    return found


RUNTIME, DEV = pins("requirements.lock"), pins("requirements-dev.lock")


@pytest.mark.parametrize(("lock", "groups"), [(RUNTIME, []), (DEV, ["test", "bench"])])
def test_each_lock_pins_every_requirement_of_pyproject_within_its_range(lock, groups):
    wanted = [*PYPROJECT["dependencies"], *(r for g in groups for r in PYPROJECT["optional-dependencies"][g])]
    for requirement in map(Requirement, wanted):
        assert _name(requirement.name) in lock, f"{requirement.name} is not in the lock (run `make lock`)"
        assert requirement.specifier.contains(lock[_name(requirement.name)], prereleases=True), requirement


def test_the_dev_lock_holds_the_runtime_lock_unchanged():
    """The venv and the Modal image share every runtime version (the dev lock is compiled constrained by it)."""
    assert {name: DEV.get(name) for name in RUNTIME} == RUNTIME
    assert "pytest" in DEV and "pytest" not in RUNTIME and "modal" not in RUNTIME  # Modal brings its own client


def test_this_venv_was_installed_from_the_dev_lock():
    installed = {_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    assert {name: installed.get(name) for name in DEV} == DEV


def test_the_locks_name_no_local_path_or_index():
    """CI reaches only the package registries: a lock must not point at files or indexes of this machine."""
    for lock in ("requirements.lock", "requirements-dev.lock"):
        text = (REPO / lock).read_text()
        assert not re.search(r"^\s*(-e|-f|--find-links|--index-url|--extra-index-url|file:|/)", text, re.M), lock
