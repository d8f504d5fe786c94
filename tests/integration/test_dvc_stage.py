"""`dvc repro` of the real dvc.yaml in a temporary git repository, with the real dvc and git CLIs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from eegcache.core import store
from tests.integration.projects import BIN, GIT_IDENTITY, make_repo

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def sh(*args: str, cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1", **GIT_IDENTITY}
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def repo(tmp_path_factory, demo_corpus) -> Path:
    """A fresh clone-like repo: the project's DVC files, conf/ and package source, plus a demo corpus."""
    return make_repo(tmp_path_factory.mktemp("repo"), demo_corpus)


def lock_hash(root: Path) -> str:
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    outs = {out["path"]: out for out in lock["stages"]["build_cache"]["outs"]}
    assert set(outs) == {"cache/tusz", "metrics/cache_stats.json"}
    return outs["cache/tusz"]["md5"]


def test_repro_builds_and_locks_the_cache(repo):
    sh("dvc", "repro", cwd=repo)
    digest = lock_hash(repo)
    assert digest.endswith(".dir")
    meta = store.read_metadata(repo / "cache" / "tusz")
    assert meta["splits"]["train"]["files"] > 0
    assert yaml.safe_load((repo / "metrics" / "cache_stats.json").read_text())["train"]["files"] > 0
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]["build_cache"]
    assert set(lock["params"]["params.yaml"]) == {
        "data.split_policy",
        "data.dev_ratio",
        "data.split_seed",
        "data.prefer_montage_folders",
        "preprocess",
        "build.on_error",
    }
    assert "up to date" in sh("dvc", "status", cwd=repo)
    assert "didn't change" in sh("dvc", "repro", cwd=repo)


def dvc_json(*args: str, cwd: Path) -> dict:
    """The JSON document that ``dvc <args> --json`` prints (on one line, whatever else is logged around it)."""
    return json.loads(next(line for line in sh("dvc", *args, "--json", cwd=cwd).splitlines() if line.startswith("{")))


def test_train_stage_metrics_and_roc_plot_render_in_dvc(repo):
    sh("dvc", "repro", "train", cwd=repo)
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]["train"]
    code = [
        d for d in yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]["train"]["deps"] if d.startswith("src/")
    ]
    assert {"src/eegcache/train/baseline.py", "src/eegcache/train/dataset.py", "src/eegcache/core/store.py"} <= set(
        code
    )
    assert {d["path"] for d in lock["deps"]} == {"cache/tusz", *code}
    assert set(lock["params"]["params.yaml"]) == {"train"}
    assert {o["path"] for o in lock["outs"]} == {"metrics/train.json", "metrics/roc.json", "models/baseline.json"}

    metrics = dvc_json("metrics", "show", cwd=repo)[""]["data"]["metrics/train.json"]["data"]
    assert metrics["dev_auroc"] >= 0.9 and metrics["dev_windows"] > 0

    plots = dvc_json("plots", "show", cwd=repo)["data"]["metrics/roc.json"]
    spec = plots[0]["content"]
    assert spec["encoding"]["x"]["field"] == "fpr" and spec["encoding"]["y"]["field"] == "tpr"
    values = spec["data"]["values"]
    assert (values[0]["fpr"], values[0]["tpr"], values[-1]["fpr"], values[-1]["tpr"]) == (0, 0, 1, 1)
    assert "didn't change" in sh("dvc", "repro", "train", cwd=repo)


def test_rebuild_from_scratch_gives_the_same_version(repo):
    before = lock_hash(repo)
    shutil.rmtree(repo / "cache")
    sh("dvc", "repro", "--force", cwd=repo)
    assert lock_hash(repo) == before


def test_exp_run_recomposes_params_from_conf(repo):
    before = lock_hash(repo)
    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "-qm", "cache", cwd=repo)
    sh("dvc", "exp", "run", "-S", "preprocess.dtype=float32", cwd=repo)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert params["preprocess"]["dtype"] == "float32"
    assert lock_hash(repo) != before
    assert store.read_metadata(repo / "cache" / "tusz")["dtype"] == "float32"
