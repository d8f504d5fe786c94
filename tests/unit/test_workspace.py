"""The link that carries this machine's corpus location (conf/local's paths.data_dir) to the DVC stage."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from eegcache import config, workspace
from eegcache.errors import ConfigError
from tests.conftest import REPO

LOCAL = "# @package _global_\npaths:\n  data_dir: {where}\n"


@pytest.fixture
def project(tmp_path) -> Path:
    shutil.copytree(REPO / "conf", tmp_path / "conf", ignore=shutil.ignore_patterns("default.yaml"))
    shutil.copy(REPO / "conf" / "config.yaml", tmp_path / "conf" / "config.yaml")
    for group in ("paths", "build", "modal", "train"):
        shutil.copy(REPO / "conf" / group / "default.yaml", tmp_path / "conf" / group / "default.yaml")
    return tmp_path


def tracked(project: Path, *overrides: str) -> config.Config:
    return config.from_mapping(config.compose(project, overrides), "test")


def keep_corpus_at(project: Path, where: Path) -> None:
    (project / "conf" / "local").mkdir(exist_ok=True)
    (project / "conf" / "local" / "default.yaml").write_text(LOCAL.format(where=where))


def test_without_conf_local_there_is_nothing_to_link(project):
    assert workspace.link_corpus(project, tracked(project, "data=tusz")) is None
    assert not (project / "data").exists()
    workspace.check_corpus_link(project, tracked(project, "data=tusz"))  # nothing to check either


def test_the_link_is_made_kept_and_replaced_when_conf_local_moves(project, tmp_path):
    keep_corpus_at(project, tmp_path / "disk1")
    (tmp_path / "disk1" / "tusz").mkdir(parents=True)
    said = workspace.link_corpus(project, tracked(project, "data=tusz"))
    link = project / "data" / "tusz"
    assert said == f"linked {link} -> {tmp_path / 'disk1' / 'tusz'}"
    assert Path(os.readlink(link)) == tmp_path / "disk1" / "tusz"
    assert workspace.link_corpus(project, tracked(project, "data=tusz")) is None  # already so
    workspace.check_corpus_link(project, tracked(project, "data=tusz"))

    keep_corpus_at(project, tmp_path / "disk2")
    with pytest.raises(ConfigError, match="run `eegcache params`"):
        workspace.check_corpus_link(project, tracked(project, "data=tusz"))
    said = workspace.link_corpus(project, tracked(project, "data=tusz"))
    assert said.endswith(f"(was {tmp_path / 'disk1' / 'tusz'}); {tmp_path / 'disk2' / 'tusz'} is not a folder yet")
    assert Path(os.readlink(link)) == tmp_path / "disk2" / "tusz"
    assert (tmp_path / "disk1" / "tusz").is_dir()  # the old target is untouched
    assert sorted(p.name for p in (project / "data").iterdir()) == ["tusz"]  # no staging link left behind


def test_a_real_folder_where_the_link_goes_is_refused_and_kept(project, tmp_path):
    keep_corpus_at(project, tmp_path / "disk1")
    mine = project / "data" / "tusz"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="never removes what it did not make") as refused:
        workspace.link_corpus(project, tracked(project, "data=tusz"))
    assert str(refused.value.path) == str(mine) and (mine / "notes.txt").read_text() == "mine"


def test_a_relative_location_is_taken_from_the_project_and_an_absolute_tracked_corpus_refused(project, tmp_path):
    keep_corpus_at(project, Path("../corpora"))
    link, target = workspace.corpus_link(project, tracked(project, "data=tusz"))
    assert (link, target) == (project / "data" / "tusz", Path(os.path.abspath(project / ".." / "corpora" / "tusz")))
    with pytest.raises(ConfigError, match="must lie inside the project"):
        workspace.corpus_link(project, tracked(project, "data=tusz", "paths.data_dir=/abs", "data.raw_dir=/abs/tusz"))


def test_the_demo_corpus_lives_in_the_project_and_is_never_linked(project, tmp_path):
    keep_corpus_at(project, tmp_path / "disk1")
    assert workspace.corpus_link(project, tracked(project)) is None  # data=tusz_demo: `make demo` writes it here
    assert config.load(project).data.raw_dir == "data/tusz_demo"  # conf/local does not move it either


@pytest.mark.parametrize("where", ["{project}/data", "{project}/cache", "{project}/data/tusz/deeper"])
def test_a_corpus_that_is_the_link_itself_or_overlaps_the_cache_is_refused(project, where):
    keep_corpus_at(project, Path(where.format(project=project)))
    with pytest.raises(ConfigError, match="this link itself or overlaps the cache"):
        workspace.corpus_link(project, tracked(project, "data=tusz"))
    assert not (project / "data" / "tusz").is_symlink()


def test_a_project_data_folder_that_links_to_the_corpora_needs_no_link(project, tmp_path):
    (tmp_path / "corpora" / "tusz").mkdir(parents=True)
    os.symlink(tmp_path / "corpora", project / "data")
    keep_corpus_at(project, tmp_path / "corpora")
    assert workspace.link_corpus(project, tracked(project, "data=tusz")) is None
    workspace.check_corpus_link(project, tracked(project, "data=tusz"))


def test_a_home_relative_location_is_expanded(project, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    keep_corpus_at(project, Path("~/eeg"))
    assert workspace.corpus_link(project, tracked(project, "data=tusz"))[1] == tmp_path / "home" / "eeg" / "tusz"


def test_a_file_where_the_link_goes_is_named_a_file_and_kept(project, tmp_path):
    keep_corpus_at(project, tmp_path / "disk1")
    (project / "data").mkdir()
    (project / "data" / "tusz").write_text("mine")
    with pytest.raises(ConfigError, match="a file of its own"):
        workspace.corpus_link(project, tracked(project, "data=tusz"))
    assert (project / "data" / "tusz").read_text() == "mine"
