"""The resolver on a fake volume (a temporary directory) with a real S3 server, real DVC and git: each preset's
order, each reason a copy is rejected, the mount source, concurrent and killed resolves, builds, pruning, and
that files beside the cache on the volume survive every path."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from eegcache.core import store
from eegcache.versions import dvc, verify
from eegcache.versions.expected import expected_version
from eegcache.volume import layout, prune, resolve
from tests.integration.projects import BIN, connect, files, make_project, mirror_remote, settings, sh

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PRESETS = {
    "s3_first": ("mount", "remote", "volume", "build"),
    "volume_first": ("volume", "remote", "mount", "build"),
    "build_only": ("build",),
    "offline": ("volume",),
}


@pytest.fixture(scope="module")
def project(tmp_path_factory, demo_corpus, s3_server) -> Path:
    return make_project(tmp_path_factory.mktemp("resolve_repo"), demo_corpus, s3_server, push=True)


def attempts(report: resolve.Report) -> list[tuple[str, str]]:
    return [(a.source, a.outcome) for a in report.attempts]


BYSTANDERS = {
    "notes.txt": b"the user's notes\n",
    "cache/other/data.bin": b"\x00\x01 another tool's cache",
    "cache/tusz/README": b"a file the user put beside the versions\n",
    "cache/tusz/0123456789abcdef0123456789abcdef/keep.me": b"a directory that only looks like a version\n",
}


def with_bystanders(vol: Path) -> Path:
    for rel, data in BYSTANDERS.items():
        (vol / rel).parent.mkdir(parents=True, exist_ok=True)
        (vol / rel).write_bytes(data)
    return vol


def assert_bystanders(vol: Path) -> None:
    assert {rel: (vol / rel).read_bytes() for rel in BYSTANDERS} == BYSTANDERS


def version_dir(project: Path, vol: Path) -> Path:
    return layout.versions_root(vol) / dvc.version_at(project).dirname


def test_presets_give_the_documented_order(project, tmp_path):
    for preset, order in PRESETS.items():
        cache = settings(project, tmp_path, f"cache={preset}").cache
        assert (cache.preset, cache.sources) == (preset, order)
        assert cache.allow_build is (preset == "build_only")
    assert settings(project, tmp_path).cache.preset == "s3_first"  # the default


def test_remote_then_volume(project, tmp_path, s3_server):
    vol = with_bystanders(tmp_path / "vol")
    first = resolve.resolve(settings(project, vol, "cache=volume_first"), project)
    assert attempts(first) == [("volume", "rejected"), ("remote", "used")]
    assert "not on the volume" in first.attempts[0].reason
    assert files(Path(first.path)) == files(project / "cache" / "tusz")
    version = dvc.version_at(project)
    assert first.bytes == version.size and first.files == version.nfiles - 1  # every file but the metadata
    assert first.saved_gpu_hours == pytest.approx(2.5 - first.seconds / 3600, abs=1e-3)
    again = resolve.resolve(settings(project, vol, "cache=volume_first"), project)
    assert attempts(again) == [("volume", "used")] and again.bytes == 0 and again.path == first.path
    offline = resolve.resolve(settings(project, vol, "cache=offline", "cache.validation=deep"), project)
    assert attempts(offline) == [("volume", "used")]
    assert json.loads(json.dumps(offline.as_dict()))["source"] == "volume"
    assert_bystanders(vol)
    secrets = (s3_server.secret_key.encode(), s3_server.access_key.encode())  # credentials stay in memory
    leaks = [p for p in vol.rglob("*") if p.is_file() and any(k in p.read_bytes() for k in secrets)]
    assert leaks == [] and not any(k.decode() in json.dumps(first.as_dict()) for k in secrets)


def _damage(path: Path, how: str) -> None:
    """Change a file in place (a hard link into the volume's DVC cache, so the cached object changes too)."""
    path.chmod(0o644)
    if how == "append":
        with open(path, "ab") as handle:
            handle.write(b"\0")
    else:
        with open(path, "r+b") as handle:
            handle.seek(path.stat().st_size // 2)
            byte = handle.read(1)
            handle.seek(-1, os.SEEK_CUR)
            handle.write(bytes([byte[0] ^ 0xFF]))


def _npz(path: Path) -> Path:
    return sorted(path.rglob("*.npz"))[0]


CASES = {
    # case: (change to the installed copy, overrides of the offline resolve, words of the reason)
    "missing file": (lambda d: _npz(d).unlink(), [], "missing"),
    "size mismatch": (lambda d: _damage(_npz(d), "append"), [], "bytes, metadata says"),
    "flipped byte under deep": (lambda d: _damage(_npz(d), "flip"), ["cache.validation=deep"], "content hash differs"),
    "metadata missing": (lambda d: (d / store.METADATA_NAME).unlink(), [], "metadata missing"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_rejection_reason_quarantines_only_that_copy(project, tmp_path, case):
    change, overrides, words = CASES[case]
    vol = with_bystanders(tmp_path / "vol")
    path = Path(resolve.resolve(settings(project, vol, "cache=volume_first"), project).path)
    change(path)
    with pytest.raises(resolve.ResolveError) as caught:
        resolve.resolve(settings(project, vol, "cache=offline", *overrides), project)
    (attempt,) = caught.value.report.attempts
    assert (attempt.source, attempt.outcome) == ("volume", "rejected") and words in attempt.reason
    assert not path.exists()
    (moved,) = (layout.versions_root(vol) / layout.QUARANTINE).glob(f"{path.name}.*[0-9]")
    assert words in moved.with_name(f"{moved.name}.why.txt").read_text()
    assert_bystanders(vol)
    fixed = resolve.resolve(settings(project, vol, "cache=volume_first"), project)  # corrupt objects were evicted
    assert attempts(fixed) == [("volume", "rejected"), ("remote", "used")]
    assert files(Path(fixed.path)) == files(project / "cache" / "tusz")


def test_flipped_byte_passes_fast_validation(project, tmp_path):
    """What `fast` promises: no content read; only `deep` sees a same-size change."""
    vol = tmp_path / "vol"
    path = Path(resolve.resolve(settings(project, vol, "cache=volume_first"), project).path)
    _damage(_npz(path), "flip")
    assert attempts(resolve.resolve(settings(project, vol, "cache=offline"), project)) == [("volume", "used")]


def test_a_copy_of_another_version_is_rejected(project, tmp_path):
    vol = tmp_path / "vol"
    path = Path(resolve.resolve(settings(project, vol, "cache=volume_first"), project).path)
    other = "f" * 32
    shutil.copytree(path, path.with_name(other))
    with pytest.raises(resolve.ResolveError) as caught:
        resolve.resolve(settings(project, vol, "cache=offline", f"cache.version={other}.dir"), project)
    reason = caught.value.report.attempts[0].reason
    assert f"makes version {path.name}.dir, not the expected {other}.dir" in reason
    assert path.is_dir()  # the real version stays


def test_mount_source_with_a_plain_directory(project, tmp_path, s3_server):
    """A directory holding a copy of the remote prefix stands in for the bucket mount."""
    mount = mirror_remote(project, s3_server, tmp_path / "s3-cache")
    vol = with_bystanders(tmp_path / "vol")
    report = resolve.resolve(settings(project, vol, "cache=s3_first", f"cache.mount_point={mount}"), project)
    assert attempts(report) == [("mount", "used")] and report.bytes == dvc.version_at(project).size
    assert files(Path(report.path)) == files(project / "cache" / "tusz")
    # a corrupt object in the mount is refused by its hash; the next source delivers
    shutil.rmtree(report.path)
    shutil.rmtree(layout.versions_root(vol) / ".dvc" / "cache")
    victim = sorted((mount / "files" / "md5").rglob("*"))[-1]
    victim.write_bytes(victim.read_bytes()[:-1] + b"#")
    report = resolve.resolve(settings(project, vol, "cache=s3_first", f"cache.mount_point={mount}"), project)
    assert attempts(report) == [("mount", "rejected"), ("remote", "used")]
    assert "content hash" in report.attempts[0].reason and str(mount) in report.attempts[0].reason
    assert files(Path(report.path)) == files(project / "cache" / "tusz")
    assert_bystanders(vol)


def _resolve_cli(project: Path, vol: Path, *args: str) -> subprocess.Popen:
    cmd = [str(BIN / "eegcache"), "resolve", "--repo", str(project), f"cache.volume_root={vol}", *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_processes_resolving_at_once(project, tmp_path):
    vol = with_bystanders(tmp_path / "vol")
    runs = [_resolve_cli(project, vol, "cache=volume_first", "--json", str(tmp_path / f"r{i}.json")) for i in range(2)]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    reports = [json.loads((tmp_path / f"r{i}.json").read_text()) for i in range(2)]
    assert reports[0]["path"] == reports[1]["path"]
    assert files(Path(reports[0]["path"])) == files(project / "cache" / "tusz")
    leftovers = [
        p.name for p in layout.versions_root(vol).iterdir() if p.name.startswith((".partial", layout.QUARANTINE))
    ]
    assert leftovers == []
    assert_bystanders(vol)


def test_resolve_killed_midway_then_rerun(project, tmp_path):
    vol = with_bystanders(tmp_path / "vol")
    final = version_dir(project, vol)
    objects = layout.versions_root(vol) / ".dvc" / "cache" / "files" / "md5"
    killed_midway = 0
    for delay in (0.0, 0.02, 0.05):
        run = _resolve_cli(project, vol, "cache=volume_first", "cache.jobs=1")
        deadline = time.monotonic() + 120
        while run.poll() is None and time.monotonic() < deadline and sum(1 for _ in objects.rglob("*")) < 3:
            time.sleep(0.001)
        time.sleep(delay)
        killed_midway += not final.exists() and run.poll() is None
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=60)
        assert (
            not final.exists()
            or verify.verify_version(final, expected_version(settings(project, vol), project).hash).ok
        )
        if final.exists():
            shutil.rmtree(final)  # start the next round without the version dir (its objects stay cached)
    assert killed_midway, "every resolve finished before it could be killed"
    report = resolve.resolve(settings(project, vol, "cache=volume_first"), project)
    assert attempts(report) == [("volume", "rejected"), ("remote", "used")]
    assert files(Path(report.path)) == files(project / "cache" / "tusz")
    assert not list(layout.versions_root(vol).glob(".partial-*"))  # the dead runs' partial checkouts are gone
    assert_bystanders(vol)


def _clone(project: Path, tmp_path: Path, server, secret: str | None = None) -> Path:
    clone = tmp_path / "clone"
    sh("git", "clone", "-q", str(project), str(clone), cwd=tmp_path)
    shutil.copytree(project / "data", clone / "data")
    connect(clone, server, dvc.remote_settings(project)["url"].split("/", 3)[3])
    if secret:
        dvc.configure_access(clone, secret_key=secret)
    return clone


def test_no_source_is_one_clear_error_and_deletes_nothing(project, tmp_path, s3_server):
    clone = _clone(project, tmp_path, s3_server, secret="wrong-secret")
    vol = with_bystanders(tmp_path / "vol")
    run = _resolve_cli(clone, vol, "cache=s3_first")
    out, err = run.communicate(timeout=300)
    assert run.returncode != 0 and out == ""
    message = err[err.index("eegcache resolve: error:") :]
    version = dvc.version_at(project).hash
    assert f"no valid source for cache version {version} (preset s3_first" in message
    lines = [line.strip() for line in message.splitlines() if line.strip().startswith("- ")]
    assert [line.split(":")[0] for line in lines] == ["- mount", "- remote", "- volume", "- build"]
    assert "skipped: no mount configured" in lines[0]
    assert "skipped: remote 'storage'" in lines[1] and "SignatureDoesNotMatch" in lines[1]
    assert "rejected: version" in lines[2] and "not on the volume" in lines[2]
    assert "skipped: building is not allowed (cache.allow_build: false)" in lines[3]
    assert "Nothing was deleted" in message
    assert s3_server.secret_key not in out + err and "wrong-secret" not in out + err
    assert_bystanders(vol)
    # an unreachable remote is skipped and the next source serves
    mount = tmp_path / "mount"
    shutil.copytree(project / ".dvc" / "cache", mount)
    report = resolve.resolve(settings(clone, vol, "cache.sources=[remote,mount]", f"cache.mount_point={mount}"), clone)
    assert attempts(report) == [("remote", "skipped"), ("mount", "used")]
    assert files(Path(report.path)) == files(project / "cache" / "tusz")
    # a copy already on the volume is checked and used before any source is contacted
    report = resolve.resolve(settings(clone, vol, "cache=s3_first"), clone)
    assert attempts(report) == [("mount", "skipped"), ("remote", "used")] and report.bytes == 0
    assert "already on the volume" in report.attempts[1].reason
    assert_bystanders(vol)


def test_build_source_builds_pushes_and_installs_the_same_version(project, tmp_path, s3_server):
    clone = _clone(project, tmp_path, s3_server)  # raw data and dvc.lock, no built cache
    assert not (clone / "cache" / "tusz").exists()
    vol = tmp_path / "vol"
    said: list[str] = []
    report = resolve.resolve(settings(clone, vol, "cache=build_only"), clone, say=said.append)
    assert attempts(report) == [("build", "used")]
    assert any("estimated" in line and "EDF files" in line for line in said)
    assert any(line.startswith("pushed ") for line in said)
    assert report.version == dvc.version_at(project).hash  # byte-identical build: the same version hash
    assert files(Path(report.path)) == files(project / "cache" / "tusz")
    assert verify.verify_remote(clone).ok


def test_prune_keeps_the_version_in_use_and_what_others_share(project, tmp_path, s3_server):
    clone = _clone(project, tmp_path, s3_server)
    sh("eegcache", "params", "preprocess.clip=5.0", cwd=clone)
    sh("dvc", "repro", cwd=clone)
    dvc.push(clone)
    vol = with_bystanders(tmp_path / "vol")
    v1 = resolve.resolve(settings(project, vol, "cache=volume_first"), project)
    v2 = resolve.resolve(settings(clone, vol, "cache=volume_first", "preprocess.clip=5.0"), clone)
    assert v1.version != v2.version
    os.utime(v1.path, (time.time() - 3600,) * 2)  # v1 used longest ago
    result = prune.prune(vol, keep=1, in_use={v1.version})
    assert result.removed == (Path(v2.path).name,) and set(result.kept) == {Path(v1.path).name}
    assert result.objects_removed > 0 and not Path(v2.path).exists()
    assert verify.verify_version(Path(v1.path), expected_version(settings(project, vol), project).hash, deep=True).ok
    assert_bystanders(vol)
    again = prune.prune(vol, keep=0, in_use={v1.version})
    assert again.removed == () and Path(v1.path).is_dir()
