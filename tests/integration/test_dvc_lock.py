"""The committed ``dvc.lock`` matches the tree for the code the stages depend on: what ``dvc status`` would report
for ``src/eegcache/core`` and train's modules after a fresh clone, computed with DVC's own API in a copy of the
project's DVC files and source (no data: the corpus and cache deps are not compared)."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import pytest

from eegcache import config
from eegcache.builder.run import run_build
from eegcache.devtools.demo import write_demo_corpus
from eegcache.versions import dvc, fetch
from tests.conftest import REPO, make_config

pytestmark = pytest.mark.integration

FIX = "edit of code a stage depends on: run `make demo` (or `dvc repro`) and commit dvc.lock"


def _code_dep_status(root: Path) -> dict[str, dict[str, str]]:
    """stage -> {code dep path: DVC status ("modified", ...)} of every dep under src/ that is not up to date."""
    from dvc.repo import Repo

    Repo.init(str(root), no_scm=True)
    changed: dict[str, dict[str, str]] = {}
    with contextlib.chdir(root), Repo(str(root)) as repo:  # DVC reads a stage name as `dvc.yaml:<name>` of the cwd
        for name in ("build_cache", "train"):
            (stage,) = repo.stage.collect(name)
            code = [dep for dep in stage.deps if dep.def_path.startswith("src/")]
            assert code, f"stage {name} lists no code deps"
            for dep in code:
                if status := dep.status():
                    changed.setdefault(name, {}).update(status)
    return changed


def _copy(root: Path) -> Path:
    root.mkdir()
    for name in ("dvc.yaml", "dvc.lock", "params.yaml", ".dvcignore"):
        shutil.copy(REPO / name, root / name)
    shutil.copytree(REPO / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__"))
    return root


def test_committed_lock_records_the_code_deps_as_they_are(tmp_path):
    assert _code_dep_status(_copy(tmp_path / "project")) == {}, FIX


def test_a_docstring_edit_in_core_is_a_changed_dep_and_one_outside_is_not(tmp_path):
    """The check above does notice an edit (so a passing run means something): core changes build_cache only."""
    root = _copy(tmp_path / "project")
    for rel in ("src/eegcache/core/signal.py", "src/eegcache/volume/resolve.py"):
        (root / rel).write_text((root / rel).read_text() + "# an edit\n")
    assert _code_dep_status(root) == {"build_cache": {"src/eegcache/core": "modified"}}


# The demo's version before the package moved into build/, versions/, volume/ (issue 18): core/ is the code that
# shapes a cache's bytes, and nothing else; a deliberate change of core/ changes this hash (and `make demo` the lock).
DEMO_VERSION = "639fab2cec99d91f48013f0e9856607f.dir"


@pytest.mark.slow
def test_the_demo_corpus_builds_the_version_the_committed_lock_names(tmp_path):
    """What `make demo` builds (the CLI's default demo corpus, params.yaml) is the version dvc.lock names, byte for
    byte: the tree hash of the built cache equals the lock's, and the lock's is the demo's recorded version."""
    write_demo_corpus(tmp_path / "corpus", patients_per_split=2, seed=0, minutes=(2.0, 4.0))  # `eegcache demo-corpus`
    staged = config.load(REPO, params_file=REPO / config.PARAMS_FILE)
    summary = run_build(make_config(staged, tmp_path / "corpus", tmp_path / "work"))
    built, _ = fetch.tree_source(summary.cache_dir)
    assert built == dvc.version_at(REPO).hash == DEMO_VERSION
