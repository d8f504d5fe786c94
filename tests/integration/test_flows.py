"""The users' flows end to end through the CLI, DVC's own commands and the real S3 server: an experiment run with
``dvc exp run -S``, params composed with ``eegcache params`` then ``dvc repro``, a build with a group selection, and
a version asked for under a configuration it was not built with. No valid version may be quarantined."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eegcache.core import store
from eegcache.versions import dvc
from eegcache.volume import layout
from tests.integration.projects import files, make_project, make_repo, sh
from tests.integration.test_modal_app import container, load_app

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:The .* function is executing locally:UserWarning"),
]


def resolved(root: Path, *overrides: str) -> dict:
    """``eegcache resolve <overrides> --json -`` -> the report (the command must succeed)."""
    out = sh("eegcache", "resolve", *overrides, "--json", "-", cwd=root).stdout
    return json.loads(out)


def quarantined(vol: Path) -> list[Path]:
    return sorted((layout.versions_root(vol) / layout.QUARANTINE).glob("*"))


def test_dvc_exp_run_then_push_then_resolve_then_modal_train(tmp_path, demo_corpus, s3_server):
    root = make_project(tmp_path / "project", demo_corpus, s3_server, push=True)
    v1 = dvc.version_at(root)
    sh("dvc", "exp", "run", "-S", "preprocess.dtype=float32", "build_cache", cwd=root)
    v2 = dvc.version_at(root)
    assert v2.hash != v1.hash and v2.params["preprocess.dtype"] == "float32"
    assert store.read_metadata(root / "cache" / "tusz")["dtype"] == "float32"
    sh("eegcache", "push", cwd=root)
    vol = tmp_path / "vol"
    cold = resolved(root, f"cache.volume_root={vol}")
    assert (cold["version"], cold["source"], Path(cold["path"]).name) == (v2.hash, "remote", v2.dirname)
    assert files(Path(cold["path"])) == files(root / "cache" / "tusz")
    warm = resolved(root, f"cache.volume_root={vol}", "cache=volume_first")
    assert (warm["source"], warm["bytes"], warm["path"]) == ("volume", 0, cold["path"])
    assert quarantined(vol) == []
    app = load_app("eegcache_modal_app_flows", root)  # deploying this project: its DVC files and conf/, no git
    with container(app, root, tmp_path / "container") as copy:
        out = app.prepare_and_train(
            v2.hash, f"cache.volume_root={vol} cache.mount_point=", local=True, project=str(copy)
        )
    prepared = out["prepare"]["resolve"]
    assert (prepared["source"], prepared["bytes"], prepared["path"]) == ("remote", 0, cold["path"])
    assert (out["resolve"]["source"], out["resolve"]["bytes"], out["resolve"]["path"]) == ("volume", 0, cold["path"])
    assert out["metrics"]["dev_auroc"] > 0.75 and quarantined(vol) == []


def test_eegcache_params_then_dvc_repro_then_push_then_resolve(tmp_path, demo_corpus, s3_server):
    root = make_project(tmp_path / "project", demo_corpus, s3_server)
    sh("eegcache", "params", "preprocess=tcp22", "preprocess.dtype=float32", cwd=root)
    sh("dvc", "repro", cwd=root)
    version = dvc.version_at(root)
    assert (version.params["preprocess.montage"], version.params["preprocess.dtype"]) == ("tcp22", "float32")
    assert sh("dvc", "status", "build_cache", cwd=root).stdout.strip().endswith("Data and pipelines are up to date.")
    sh("eegcache", "push", cwd=root)
    vol = tmp_path / "vol"
    report = resolved(root, f"cache.volume_root={vol}", "cache=volume_first")
    assert (report["version"], report["source"]) == (version.hash, "remote")
    metadata = store.read_metadata(Path(report["path"]))
    assert (metadata["params"]["preprocess"]["montage"], metadata["dtype"], len(metadata["channels"])) == (
        "tcp22",
        "float32",
        22,
    )
    # asking for what the version is gives it; asking for the conf/ default it was not built with is refused
    again = resolved(
        root, f"cache.volume_root={vol}", "cache=volume_first", "preprocess=tcp22", "preprocess.dtype=float32"
    )
    assert (again["source"], again["bytes"]) == ("volume", 0)
    refused = sh("eegcache", "resolve", f"cache.volume_root={vol}", "preprocess=tcp22", cwd=root, check=False)
    assert refused.returncode == 2 and "preprocess.dtype: version float32, config float16" in refused.stderr
    assert quarantined(vol) == [] and Path(report["path"]).is_dir()


def test_eegcache_build_with_a_group_selection(tmp_path, demo_corpus):
    root = make_repo(tmp_path / "project", demo_corpus)
    out = sh("eegcache", "build", "preprocess=tcp22", "build.workers=1", "build.progress=false", cwd=root)
    assert "cache: cache/tusz" in out.stdout
    metadata = store.read_metadata(root / "cache" / "tusz")
    assert metadata["params"]["preprocess"]["montage"] == "tcp22" and len(metadata["channels"]) == 22
    assert sh("eegcache", "verify", "cache/tusz", "--deep", cwd=root).returncode == 0


def test_a_version_asked_for_under_another_config_is_a_named_error_and_the_volume_is_untouched(
    tmp_path, demo_corpus, s3_server
):
    root = make_project(tmp_path / "project", demo_corpus, s3_server, push=True)  # cache-v1: float16, ref19
    vol = tmp_path / "vol"
    first = resolved(root, f"cache.volume_root={vol}", "cache.rev=cache-v1")
    before = {p: (p.stat().st_mtime_ns, p.read_bytes() if p.is_file() else None) for p in sorted(vol.rglob("*"))}
    asks = {
        "by revision": ["cache.rev=cache-v1"],
        "by hash, the copy on the volume": [f"cache.version={first['version']}"],
    }
    for how, which in asks.items():
        proc = sh(
            "eegcache",
            "resolve",
            f"cache.volume_root={vol}",
            *which,
            "preprocess.dtype=float32",
            "data.split_policy=patient_disjoint",
            cwd=root,
            check=False,
        )
        assert proc.returncode == 2, (how, proc.stdout, proc.stderr)
        assert "preprocess.dtype: version float16, config float32" in proc.stderr, how
        assert "data.split_policy: version official_tusz, config patient_disjoint" in proc.stderr, how
        after = {p: (p.stat().st_mtime_ns, p.read_bytes() if p.is_file() else None) for p in sorted(vol.rglob("*"))}
        assert after == before, how  # nothing fetched, moved, marked or quarantined
    assert quarantined(vol) == []
    fresh = tmp_path / "fresh"  # a bare hash the volume does not hold: its metadata is read from the remote first
    proc = sh(
        "eegcache",
        "resolve",
        f"cache.volume_root={fresh}",
        f"cache.version={first['version']}",
        "preprocess.dtype=float32",
        cwd=root,
        check=False,
    )
    assert proc.returncode == 2 and "preprocess.dtype: version float16, config float32" in proc.stderr
    assert not fresh.exists() or not any(fresh.rglob("*.npz"))


def test_a_volume_inside_the_projects_cache_is_refused(tmp_path, demo_corpus, s3_server):
    root = make_project(tmp_path / "project", demo_corpus, s3_server, push=True)
    before = files(root / "cache" / "tusz")
    for value in ("", ".", "cache/tusz", "cache/tusz/inner"):
        proc = sh("eegcache", "resolve", f"cache.volume_root={value}", cwd=root, check=False)
        assert proc.returncode == 2 and "cache.volume_root" in proc.stderr, (value, proc.stderr)
    assert files(root / "cache" / "tusz") == before
