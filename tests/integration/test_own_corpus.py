"""A corpus kept outside the project, on the README's road verbatim: ``conf/local/default.yaml`` says where, ``eegcache
params data=tusz`` keeps the project's link to it, ``dvc repro build_cache`` builds it; the tracked files name no
machine path, and a teammate whose corpus lives elsewhere gets the same version hash."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

from eegcache.core import corpus
from eegcache.versions import dvc
from eegcache.versions.verify import verify
from tests.conftest import REPO
from tests.integration.projects import make_repo, sh

pytestmark = [pytest.mark.integration, pytest.mark.slow]
HEADING = "### Build from your own TUSZ download"
README_PATH = "/mnt/eeg"  # where the README's block keeps the corpus


def readme_block(heading: str = HEADING) -> str:
    """The first ```bash block after ``heading`` in README.md, as written there."""
    text = (REPO / "README.md").read_text()
    after = text[text.index(heading) :]
    start = after.index("```bash\n") + len("```bash\n")
    return after[start : after.index("\n```", start)] + "\n"


def follow_the_readme(project: Path, corpora: Path) -> None:
    """The README's block, run by bash in ``project`` with this machine's folder of corpora for /mnt/eeg."""
    sh("bash", "-euo", "pipefail", "-c", readme_block().replace(README_PATH, str(corpora)), cwd=project)


def changed(project: Path) -> set[str]:
    return {line[3:] for line in sh("git", "status", "--porcelain", cwd=project).stdout.splitlines()}


def test_the_readme_road_builds_a_corpus_kept_outside_and_a_teammate_gets_the_same_version(demo_corpus, tmp_path):
    assert README_PATH in readme_block() and "dvc repro" in readme_block()
    mine = make_repo(tmp_path / "mine", demo_corpus)
    for name in (".gitignore", ".dvcignore"):  # the project's own: what a clone has
        shutil.copy(REPO / name, mine / name)
    sh("git", "add", "-A", cwd=mine)
    sh("git", "commit", "-qm", "project", cwd=mine)
    disk1 = tmp_path / "disk1"
    shutil.copytree(demo_corpus, disk1 / "tusz")

    follow_the_readme(mine, disk1)
    link = mine / "data" / "tusz"
    assert link.is_symlink() and Path(os.readlink(link)) == disk1 / "tusz"
    # the composition, the lock and the build's stats (dvc metrics); conf/local and the link are git-ignored
    assert changed(mine) == {"params.yaml", "dvc.lock", "metrics/"}
    for name in ("params.yaml", "dvc.lock", "dvc.yaml"):
        assert str(tmp_path) not in (mine / name).read_text(), name  # no path of this machine is tracked
    params = yaml.safe_load((mine / "params.yaml").read_text())
    assert params["data"]["raw_dir"] == "data/tusz" and params["paths"]["data_dir"] == "data"
    lock = yaml.safe_load((mine / "dvc.lock").read_text())["stages"]["build_cache"]
    assert [d["path"] for d in lock["deps"] if d["path"].startswith("data")] == ["data/tusz"]
    verdict = verify(mine / "cache" / "tusz")
    assert verdict.ok and verdict.files == len(corpus.survey(demo_corpus).refs)
    sh("git", "add", "-A", cwd=mine)
    sh("git", "commit", "-qm", "the cache of our corpus", cwd=mine)

    theirs = tmp_path / "theirs"
    sh("git", "clone", "-q", str(mine), str(theirs), cwd=tmp_path)
    disk2 = tmp_path / "disk2" / "eeg corpora"  # another disk, another name (a space in it too)
    shutil.copytree(demo_corpus, disk2 / "tusz")
    follow_the_readme(theirs, disk2)
    assert changed(theirs) == set()  # the same params.yaml, the same dvc.lock: the same version hash
    assert dvc.version_at(theirs).hash == dvc.version_at(mine).hash
    assert Path(os.readlink(theirs / "data" / "tusz")) == disk2 / "tusz"

    # conf/local moved on without `eegcache params`: the stage refuses to build what the link still leads to
    local = theirs / "conf" / "local" / "default.yaml"
    local.write_text(local.read_text().replace(str(disk2), str(tmp_path / "disk3")))
    proc = sh("dvc", "repro", "-f", "build_cache", cwd=theirs, check=False)
    assert proc.returncode != 0
    assert f"keeps the corpus at {tmp_path / 'disk3' / 'tusz'}" in proc.stdout + proc.stderr
    assert "run `eegcache params`" in proc.stdout + proc.stderr
