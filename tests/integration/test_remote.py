"""The cache on a real S3 server (SeaweedFS on loopback): push, status, pull in a fresh clone, versions by tag,
pulling a version into another directory, remote verification and bad credentials."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from eegcache import config
from eegcache.core import process, store
from eegcache.devtools import s3local
from eegcache.versions import dvc, fetch, identity, lockfile, verify
from eegcache.volume import install
from tests.conftest import REPO
from tests.integration.projects import BIN, connect, files, make_project, sh

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def project(tmp_path_factory, demo_corpus, s3_server) -> Path:
    """A git repo with the project's DVC files, a built demo cache, and `storage` on the local S3 server."""
    return make_project(tmp_path_factory.mktemp("remote_repo"), demo_corpus, s3_server)


def test_credentials_stay_out_of_tracked_files(project, s3_server):
    tracked = sh("git", "ls-files", cwd=project).stdout.split()
    assert ".dvc/config.local" not in tracked
    for name in tracked:
        text = (project / name).read_bytes()
        assert s3_server.secret_key.encode() not in text and s3_server.access_key.encode() not in text, name
    config = (project / ".dvc" / "config").read_text()
    assert "url = s3://" in config and "verify = True" in config and "endpointurl" not in config
    local = project / ".dvc" / "config.local"  # the untracked one holds the secret: its owner's alone
    assert s3_server.secret_key in local.read_text() and stat.S_IMODE(local.stat().st_mode) == 0o600


def test_push_uploads_everything_then_nothing(project):
    version = dvc.version_at(project)
    assert dvc.push(project) == version.nfiles + 1  # every file, metadata included, plus the .dir object
    assert dvc.push(project) == 0
    assert "are in sync" in sh("dvc", "status", "-c", cwd=project).stdout
    verdict = verify.verify_remote(project, deep=True)
    assert verdict.ok, verdict.problems
    assert verdict.files == version.nfiles + 1


def test_pull_in_a_fresh_clone_is_byte_identical(project, s3_server, tmp_path):
    dvc.push(project)
    clone = tmp_path / "clone"
    sh("git", "clone", "-q", str(project), str(clone), cwd=tmp_path)
    assert not (clone / "cache" / "tusz").exists()
    connect(clone, s3_server, _prefix(project))
    dvc.pull(clone)
    assert files(clone / "cache" / "tusz") == files(project / "cache" / "tusz")


def _prefix(root: Path) -> str:
    with (root / ".dvc" / "config").open() as handle:
        url = next(line.split("=", 1)[1].strip() for line in handle if line.strip().startswith("url"))
    return url.split("/", 3)[3]


def test_pull_version_into_another_directory(project, tmp_path, s3_server):
    dvc.push(project)
    version = dvc.version_at(project, "cache-v1")
    out = install.pull_version(project, version, tmp_path / "volume")
    assert out == tmp_path / "volume" / version.dirname
    assert files(out) == files(project / "cache" / "tusz")
    sample = next(out.rglob("*.npz"))
    assert not os.access(sample, os.W_OK) or os.geteuid() == 0
    assert sample.stat().st_mode & 0o222 == 0  # read-only
    assert sample.stat().st_nlink >= 2 or sample.is_symlink()  # stored once: linked from the volume's DVC cache
    for path in (tmp_path / "volume").rglob("*"):
        if path.is_file():
            assert s3_server.secret_key.encode() not in path.read_bytes(), path
    again = install.pull_version(project, version, tmp_path / "volume")  # a rerun is a no-op
    assert files(again) == files(out)


def test_remote_verify_catches_objects_deleted_behind_dvcs_back(project, tmp_path, s3_server):
    dvc.push(project)
    version = dvc.version_at(project)
    listing = yaml.safe_load(
        (project / ".dvc" / "cache" / "files" / "md5" / version.hash[:2] / version.hash[2:]).read_text()
    )
    victim = next(e for e in listing if e["relpath"].endswith(".npz"))
    url = f"s3://{s3_server.bucket}/{_prefix(project)}/files/md5/{victim['md5'][:2]}/{victim['md5'][2:]}"
    sh(str(BIN / "s5cmd"), "--endpoint-url", s3_server.endpoint_url, "rm", url, cwd=tmp_path, env=s3_server.env())
    verdict = verify.verify_remote(project)
    assert not verdict.ok
    assert verdict.problems == (f"{victim['relpath']} ({victim['md5']}): missing on the remote",)
    assert dvc.push(project) == 1  # pushing again re-sends exactly the missing object
    assert verify.verify_remote(project).ok
    dir_url = f"s3://{s3_server.bucket}/{_prefix(project)}/files/md5/{version.hash[:2]}/{version.hash[2:]}"
    sh(str(BIN / "s5cmd"), "--endpoint-url", s3_server.endpoint_url, "rm", dir_url, cwd=tmp_path, env=s3_server.env())
    assert verify.verify_remote(project).problems == (f"{version.hash}: the .dir object is missing on the remote",)
    assert dvc.push(project) == 1 and verify.verify_remote(project, deep=True).ok


def test_versions_and_tag_checkout_round_trip(project, s3_server):
    dvc.push(project)
    v1 = dvc.version_at(project, "cache-v1")
    v1_files = files(project / "cache" / "tusz")
    sh("eegcache", "params", "preprocess.dtype=float32", cwd=project)
    sh("dvc", "repro", cwd=project)
    dvc.push(project)
    sh("git", "add", "-A", cwd=project)
    sh("git", "commit", "-qm", "cache v2 (float32)", cwd=project)
    sh("git", "tag", "cache-v2", cwd=project)
    found = {v.hash: (v, revs) for v, revs in dvc.versions(project)}
    assert v1.hash in found and "cache-v1" in found[v1.hash][1]
    v2 = dvc.version_at(project, "cache-v2")
    assert v2.hash != v1.hash and v2.params["preprocess.dtype"] == "float32"
    sh("git", "checkout", "-q", "cache-v1", cwd=project)
    sh("dvc", "checkout", cwd=project)
    assert files(project / "cache" / "tusz") == v1_files
    assert store.read_metadata(project / "cache" / "tusz")["dtype"] == "float16"


def test_wrong_credentials_name_the_remote_and_cause(project, s3_server, tmp_path):
    clone = tmp_path / "clone"
    sh("git", "clone", "-q", str(project), str(clone), cwd=tmp_path)
    dvc.configure(
        clone,
        f"s3://{s3_server.bucket}/{_prefix(project)}",
        endpoint_url=s3_server.endpoint_url,
        access_key=s3_server.access_key,
        secret_key="wrong-secret",
    )
    with pytest.raises(dvc.RemoteError) as err:
        dvc.pull(clone)
    message = str(err.value)
    assert "remote 'storage'" in message and f"s3://{s3_server.bucket}" in message
    assert "wrong-secret" not in message


@pytest.fixture
def own_server(tmp_path):
    """A server of this test's own, which it may stop and restart."""

    state = tmp_path / "own-s3"
    yield state, s3local.start(state)
    s3local.stop(state, timeout_s=5)


def _clone_with_cache(project: Path, tmp_path: Path) -> Path:
    """A git clone that also holds the project's DVC cache (so it can push without building)."""
    clone = tmp_path / "clone"
    sh("git", "clone", "-q", str(project), str(clone), cwd=tmp_path)
    shutil.copytree(project / ".dvc" / "cache", clone / ".dvc" / "cache")
    return clone


def test_server_down_is_a_clear_error_and_a_rerun_after_restart_completes(project, tmp_path, own_server):

    state, server = own_server
    clone = _clone_with_cache(project, tmp_path)
    connect(clone, server, "down-up")
    assert dvc.push(clone) == dvc.version_at(clone).nfiles + 1
    version = dvc.version_at(clone)
    s3local.stop(state, timeout_s=5)
    with pytest.raises(fetch.SourceUnavailable) as err:
        install.pull_version(clone, version, tmp_path / "volume")
    assert "remote 'storage'" in str(err.value) and "s3://" in str(err.value)
    assert not (tmp_path / "volume" / version.dirname).exists()  # nothing partial presented as complete
    s3local.start(state)  # same keys and endpoint as before
    out = install.pull_version(clone, version, tmp_path / "volume")
    assert files(out) == files(project / "cache" / "tusz")


def test_missing_bucket_names_it(project, tmp_path, s3_server):
    clone = _clone_with_cache(project, tmp_path)
    dvc.configure(
        clone,
        "s3://no-such-bucket/x",
        endpoint_url=s3_server.endpoint_url,
        access_key=s3_server.access_key,
        secret_key=s3_server.secret_key,
    )
    with pytest.raises(dvc.RemoteError) as err:
        dvc.push(clone)
    assert "s3://no-such-bucket/x" in str(err.value)
    assert "bucket" in str(err.value).lower()


def test_object_missing_on_the_remote_fails_the_pull(project, tmp_path, own_server):
    state, server = own_server
    clone = _clone_with_cache(project, tmp_path)
    connect(clone, server, "holes")
    dvc.push(clone)
    version = dvc.version_at(clone)
    npz = next(
        e
        for e in yaml.safe_load(
            Path(clone / ".dvc" / "cache" / "files" / "md5" / version.hash[:2] / version.hash[2:]).read_text()
        )
        if e["relpath"].endswith(".npz")
    )
    url = f"s3://{server.bucket}/holes/files/md5/{npz['md5'][:2]}/{npz['md5'][2:]}"
    sh(str(BIN / "s5cmd"), "--endpoint-url", server.endpoint_url, "rm", url, cwd=tmp_path, env=server.env())
    with pytest.raises(fetch.FetchError):
        install.pull_version(clone, version, tmp_path / "volume")
    assert not (tmp_path / "volume" / version.dirname).exists()


def test_cli_push_verify_versions(project):
    cli = [sys.executable, "-m", "eegcache.cli"]
    assert "version" in sh(*cli, "push", cwd=project).stdout
    assert "OK (fast): all" in sh(*cli, "remote-verify", "--rev", "cache-v1", cwd=project).stdout
    listing = sh(*cli, "versions", cwd=project).stdout
    assert "cache-v1" in listing and dvc.version_at(project, "cache-v1").dirname[:12] in listing


def test_server_stopped_mid_pull_then_restarted(tmp_path, own_server):
    """Stop the server while a pull of ~250 MB is under way, restart it: the version dir is either absent
    (the pull failed) or complete, and a rerun ends with a byte-identical version."""
    import numpy as np

    state, server = own_server
    source = tmp_path / "source"
    source.mkdir()
    sh("dvc", "init", "-q", "--no-scm", cwd=source)
    rng = np.random.default_rng(0)
    entries = {}
    for i in range(60):
        (source / "big" / "train").mkdir(parents=True, exist_ok=True)
        data = rng.bytes(4_000_000)
        (source / "big" / "train" / f"f{i:03d}.npz").write_bytes(data)
        entries[f"train/f{i:03d}.npz"] = {
            "md5": store.md5_bytes(data),
            "size": len(data),
            "split": "train",
            "patient": f"p{i:03d}",
            "samples": 1,
            "seconds": 1.0,
            "seizure_seconds": 0.0,
            "seizures": [],
            "zero_filled": [],
        }
    # a cache as pull-version checks it: files as its metadata lists them (composed as a build composes it)
    store.write_metadata(
        source / "big",
        process.cache_metadata(
            params=identity.stage_params(config.load(REPO, local=False)),
            code="test",
            package_version="test",
            inputs=[(rel, e["md5"], None) for rel, e in entries.items()],
            files=entries,
            skipped=[],
            excluded=[],
        ),
    )
    sh("dvc", "add", "-q", "big", cwd=source)
    dvc.configure(
        source,
        f"s3://{server.bucket}/mid",
        endpoint_url=server.endpoint_url,
        access_key=server.access_key,
        secret_key=server.secret_key,
    )
    sh("dvc", "push", "-q", cwd=source)
    out = yaml.safe_load((source / "big.dvc").read_text())["outs"][0]
    version = lockfile.Version("big", out["md5"], out["nfiles"], out["size"])
    vol = tmp_path / "volume"
    code = (
        f"from pathlib import Path; from eegcache.versions.lockfile import Version; "
        f"from eegcache.volume.install import pull_version; "
        f"pull_version(Path({str(source)!r}), {version!r}, Path({str(vol)!r}), jobs=1)"
    )
    pull = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    fetched = vol / ".dvc" / "cache" / "files" / "md5"
    deadline = time.monotonic() + 60
    while pull.poll() is None and time.monotonic() < deadline and sum(1 for _ in fetched.rglob("*")) < 10:
        time.sleep(0.01)
    assert pull.poll() is None, "the pull ended before the server was stopped"
    s3local.stop(state, timeout_s=5)
    time.sleep(1)
    s3local.start(state)
    _, stderr = pull.communicate(timeout=600)
    final = vol / version.dirname
    if pull.returncode != 0:  # it gave up while the server was down
        assert not final.exists() and "remote 'storage'" in stderr
    else:  # its retries outlasted the outage
        assert files(final) == files(source / "big")
    again = install.pull_version(source, version, vol)
    assert files(again) == files(source / "big")
