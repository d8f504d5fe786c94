"""One lock per volume (installs and resolves share it, prune takes it exclusively), an existing version directory
checked before it is announced, and partial objects of killed fetches removed by the next run (issue 20, property 4)."""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from eegcache import trust
from eegcache.builder.run import run_build
from eegcache.errors import CacheError
from eegcache.versions import fetch, objects
from eegcache.versions.lockfile import Version
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
    installed(built, tmp_path / "vol")  # a volume of ours, with its DVC cache
    cache_dir = layout.versions_root(tmp_path / "vol") / layout.DVC_CACHE
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)  # a process that has exited
    folder = objects.cache_path(cache_dir, version).parent
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
    left = {p.name for p in folder.iterdir() if p.name.endswith(".tmp")}
    assert left == {v for k, v in names.items() if k != "killed"}
    install.install(source, version, layout.versions_root(tmp_path / "vol"))  # the next run removes them too
    assert (folder / names["alive"]).exists() and (folder / names["other host"]).exists()


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else b"" for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize(
    ("plant", "kind"),
    [
        (
            {".dvc/config": "[core]\n    remote = storage\n['remote \"storage\"']\n    url = s3://theirs/\n"},
            "a DVC project",
        ),
        ({".git/HEAD": "ref: refs/heads/main\n"}, "a git repository"),
        ({"thesis.tex": "mine"}, "not empty"),
    ],
)
def test_a_directory_that_is_not_an_eegcache_volume_is_refused_and_left_as_it_was(built, tmp_path, plant, kind):
    target = tmp_path / "theirs"
    for rel, text in plant.items():
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        (target / rel).write_text(text)
    before = _snapshot(target)
    version, source = fetch.tree_source(built)
    with pytest.raises(CacheError, match=f"{kind}, not a volume of eegcache's") as refused:
        install.refuse_foreign(target)  # what pull-version checks before it writes anything
    assert str(refused.value.path) == str(target)
    with pytest.raises(CacheError, match=f"{kind}, not a volume of eegcache's") as refused:
        install.pull_version(tmp_path, Version("t", version, 0, 0), target, mount=built)
    assert str(refused.value.path) == str(target) and _snapshot(target) == before


def test_an_eegcache_volume_is_marked_and_one_made_before_the_marker_is_still_ours(built, tmp_path):
    version, path = installed(built, tmp_path / "vol")
    versions = layout.versions_root(tmp_path / "vol")
    assert (versions / layout.MARKER).is_file()
    (versions / layout.MARKER).unlink()  # a volume an earlier eegcache made: its .dvc/config is eegcache's own
    _, again = installed(built, tmp_path / "vol")  # accepted, not refused as someone else's
    assert again == path


@pytest.mark.parametrize("planted", ["cache", "cache/tusz/.dvc", "cache/tusz/.dvc/tmp", "cache/tusz/.dvc/site",
                                     "cache/tusz/.dvc/cache"])  # fmt: skip
def test_a_link_planted_below_the_volume_is_refused_and_nothing_lands_outside(built, tmp_path, planted):
    volume, outside = tmp_path / "vol", tmp_path / "outside"
    outside.mkdir()
    link = volume / planted
    link.parent.mkdir(parents=True, exist_ok=True)
    if planted != "cache":
        installed(built, tmp_path / "first")  # any volume layout: then the planted link is where ours would be
        layout.versions_root(volume).mkdir(parents=True, exist_ok=True)
        (layout.versions_root(volume) / layout.MARKER).write_text("ours\n")
    os.symlink(outside, link)
    version, source = fetch.tree_source(built)
    with pytest.raises(trust.UnsafeName, match="is a symbolic link"):
        install.install(source, version, layout.versions_root(volume), root=volume)
    assert list(outside.iterdir()) == []


def test_a_runs_folder_that_is_a_link_is_refused_before_the_trainer_runs(built, tmp_path):
    from eegcache import config, launch
    from tests.conftest import REPO

    volume, outside = tmp_path / "vol", tmp_path / "outside"
    outside.mkdir()
    volume.mkdir()
    os.symlink(outside, volume / "runs")
    base = config.load(REPO, local=False)
    cfg = dataclasses.replace(
        base,
        build=dataclasses.replace(base.build, out_dir=str(built)),
        cache=dataclasses.replace(base.cache, volume_root=str(volume)),
    )
    with pytest.raises(trust.UnsafeName, match="runs is a symbolic link"):
        launch.launch(cfg, tmp_path, say=lambda _: None)
    assert list(outside.iterdir()) == []
