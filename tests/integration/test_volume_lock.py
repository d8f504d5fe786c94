"""One lock per volume (installs and resolves share it, prune takes it exclusively), an existing version directory
checked before it is announced, and partial objects of killed fetches removed by the next run (issue 20, property 4)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from eegcache.builder.run import run_build
from eegcache.errors import CacheError
from eegcache.versions import fetch, objects
from eegcache.volume import install, layout, prune
from tests.conftest import make_config

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def built(tmp_path_factory, demo_corpus, base_config) -> Path:
    work = tmp_path_factory.mktemp("volume_lock")
    return Path(run_build(make_config(base_config, demo_corpus, work)).cache_dir)


def installed(built: Path, volume: Path) -> tuple[str, Path]:
    version, source = fetch.tree_source(built)
    return version, install.install(source, version, layout.versions_root(volume))[0]


def test_prune_refuses_while_a_resolve_or_install_holds_the_volume_and_runs_after(built, tmp_path):
    version, path = installed(built, tmp_path / "vol")
    versions = layout.versions_root(tmp_path / "vol")
    with layout.in_use(versions):  # what a resolve holds from its start to its printed answer
        with pytest.raises(CacheError, match="the volume is in use") as refused:
            prune.prune(tmp_path / "vol", keep=0, in_use=set())
        assert "an install or a resolve is running" in str(refused.value) and path.is_dir()
    done = prune.prune(tmp_path / "vol", keep=0, in_use=set())
    assert done.removed == (path.name,) and not path.exists()


def test_an_installed_copy_damaged_behind_our_back_is_checked_quarantined_and_installed_again(built, tmp_path):
    version, path = installed(built, tmp_path / "vol")
    victim = next(p for p in sorted(path.rglob("*.npz")))
    good = victim.read_bytes()
    victim.chmod(0o644)
    victim.unlink()  # a hard link of the cache object: replace the name, not the object's bytes
    victim.write_bytes(b"12345")
    _, again = installed(built, tmp_path / "vol")
    assert again == path and victim.read_bytes() == good
    aside = layout.versions_root(tmp_path / "vol") / layout.QUARANTINE
    assert sorted(p.name for p in aside.iterdir()) == [f"{path.name}.1", f"{path.name}.1.why.txt"]
    assert victim.name in (aside / f"{path.name}.1.why.txt").read_text()


def test_partial_objects_of_killed_fetches_of_this_host_are_removed_and_nothing_else(built, tmp_path):
    version, source = fetch.tree_source(built)
    cache_dir = layout.versions_root(tmp_path / "vol") / layout.DVC_CACHE
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)  # a process that has exited
    folder = objects.cache_path(cache_dir, version).parent
    folder.mkdir(parents=True)
    host = socket.gethostname()
    names = {
        "killed": f".{'a' * 30}.{host}.{pid}.140.tmp",
        "alive": f".{'b' * 30}.{host}.{os.getpid()}.141.tmp",
        "other host": f".{'c' * 30}.elsewhere.{pid}.142.tmp",
        "not ours": "notes.tmp",
    }
    for name in names.values():
        (folder / name).write_bytes(b"partial")
    assert fetch.remove_partials(cache_dir) == 1
    assert sorted(p.name for p in folder.iterdir()) == sorted(v for k, v in names.items() if k != "killed")
    install.install(source, version, layout.versions_root(tmp_path / "vol"))  # the next run removes them too
    assert (folder / names["alive"]).exists() and (folder / names["other host"]).exists()
