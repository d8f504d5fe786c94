"""Faults across build, push, pull and resolve, on the real S3 server, DVC and git:

- kills: each operation is SIGKILLed (with its workers) at random moments, then rerun; no partial result is ever
  accepted, the final cache is byte-identical to a clean run, and the remote is complete per remote-verify;
- a corruption matrix on a volume holding two versions: each fault is found by the level that should find it,
  only the affected version is quarantined, the other version and unrelated files stay, and the next resolve
  recovers; objects and ``.dir`` removed from the remote make the resolver fall to the next source.

``EEGCACHE_KILLS`` sets the kills per operation (``make test``: 2; ``make stress``: 10). With ``EEGCACHE_FAULT_LOG``
set, every case appends one JSON line (operation, case, detected, recovered, lost) for ``bench/reliability.py``.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from eegcache.core import store
from eegcache.devtools import s3local
from eegcache.versions import dvc, objects, verify
from eegcache.versions.expected import expected_version
from eegcache.volume import layout, resolve
from tests.integration.projects import BIN, connect, files, make_project, record, settings, sh

pytestmark = [pytest.mark.integration, pytest.mark.slow]
KILLS = int(os.environ.get("EEGCACHE_KILLS", "2"))
EEGCACHE = str(BIN / "eegcache")


@pytest.fixture(scope="module")
def project(tmp_path_factory, demo_corpus, s3_server) -> Path:
    return make_project(tmp_path_factory.mktemp("faults_repo"), demo_corpus, s3_server, push=True)


def run_killed(cmd: list[str], cwd: Path, delay: float) -> bool:
    """Run ``cmd`` in its own process group and SIGKILL the group after ``delay`` s; True if it was still running."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        proc.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return True


def timed(cmd: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    sh(*cmd, cwd=cwd)
    return time.perf_counter() - started


def kill_rounds(
    operation: str,
    cmd: Callable[[int], list[str]],
    cwd: Path,
    seconds: float,
    after_kill: Callable[[int], bool],
    rerun_ok: Callable[[int], bool],
) -> None:
    """KILLS rounds: kill ``cmd(i)`` at a random moment of its ``seconds``-long run, check with ``after_kill`` that
    nothing partial is accepted (True), rerun to completion and check with ``rerun_ok``."""
    rng = random.Random(operation)
    midway = 0
    for i in range(KILLS):
        delay = rng.uniform(0.05, seconds)
        was_running = run_killed(cmd(i), cwd, delay)
        midway += was_running
        detected = after_kill(i)
        assert detected, f"{operation}: a partial result was accepted after a kill at {delay:.2f} s"
        sh(*cmd(i), cwd=cwd)
        recovered = rerun_ok(i)
        assert recovered, f"{operation}: the rerun after a kill at {delay:.2f} s did not give the clean result"
        record(
            operation, f"SIGKILL at {delay:.2f} s of ~{seconds:.2f} s", detected, recovered, killed_midway=was_running
        )
    assert midway or KILLS < 2, f"{operation}: no kill landed before the end; the moments are too late"


def test_kill_build(project, demo_corpus, tmp_path):
    clean = files(project / "cache" / "tusz")

    def cmd(i: int) -> list[str]:
        w = tmp_path / f"w{i}"
        return [
            EEGCACHE,
            "build",
            f"data.raw_dir={demo_corpus}",
            f"build.out_dir={w / 'cache'}",
            f"build.state_dir={w / 'state'}",
            f"build.metrics_file={w / 'm.json'}",
            "build.progress=false",
        ]

    def nothing_partial(i: int) -> bool:
        cache = tmp_path / f"w{i}" / "cache"
        if (cache / store.METADATA_NAME).exists():  # metadata is written last: then the cache must be whole
            return files(cache) == clean
        return not verify.verify(cache).ok if cache.exists() else True

    seconds = timed(cmd(99), project)
    kill_rounds("build", cmd, project, seconds, nothing_partial, lambda i: files(tmp_path / f"w{i}" / "cache") == clean)


def _objects_on_remote(root: Path, server) -> set[str]:
    url = dvc.remote_settings(root)["url"]
    out = sh(
        str(BIN / "s5cmd"),
        "--endpoint-url",
        server.endpoint_url,
        "ls",
        f"{url}/files/md5/*",
        cwd=root,
        env=server.env(),
        check=False,
    ).stdout
    return {line.split()[-1].replace("/", "") for line in out.splitlines() if line.strip()}


def test_kill_push(project, tmp_path, s3_server):
    clone = tmp_path / "clone"
    sh("git", "clone", "-q", str(project), str(clone), cwd=tmp_path)
    shutil.copytree(project / ".dvc" / "cache", clone / ".dvc" / "cache")
    sh("dvc", "checkout", "-q", cwd=clone)
    version = dvc.version_at(clone)
    listing = json.loads((clone / ".dvc" / "cache" / "files" / "md5" / version.hash[:2] / version.hash[2:]).read_text())
    wanted = {e["md5"] for e in listing} | {version.hash}
    prefixes: dict[int, str] = {}

    def cmd(i: int) -> list[str]:
        if i not in prefixes:  # a fresh, empty prefix for each round
            prefixes[i] = f"kill-{uuid.uuid4().hex[:8]}"
            connect(clone, s3_server, prefixes[i])
        return [EEGCACHE, "push", "--repo", str(clone)]

    def verify_tells_the_truth(i: int) -> bool:
        complete = wanted <= _objects_on_remote(clone, s3_server)
        return verify.verify_remote(clone).ok == complete

    seconds = timed(cmd(99), clone)
    kill_rounds(
        "push", cmd, clone, seconds, verify_tells_the_truth, lambda i: verify.verify_remote(clone, deep=True).ok
    )


def test_kill_pull_into_volume(project, tmp_path):
    version = dvc.version_at(project)
    expected = expected_version(settings(project, tmp_path), project).hash
    clean = files(project / "cache" / "tusz")

    def cmd(i: int) -> list[str]:
        return [EEGCACHE, "pull-version", str(tmp_path / f"vol{i}"), "--hash", version.hash, "--repo", str(project)]

    def absent_or_whole(i: int) -> bool:
        final = tmp_path / f"vol{i}" / version.dirname
        return not final.exists() or verify.verify_version(final, expected, deep=True).ok

    seconds = timed(cmd(99), project)
    kill_rounds(
        "pull into a volume",
        cmd,
        project,
        seconds,
        absent_or_whole,
        lambda i: files(tmp_path / f"vol{i}" / version.dirname) == clean,
    )


def test_kill_resolve(project, tmp_path):
    version = dvc.version_at(project)
    expected = expected_version(settings(project, tmp_path), project).hash
    clean = files(project / "cache" / "tusz")

    def final(i: int) -> Path:
        return layout.versions_root(tmp_path / f"vol{i}") / version.dirname

    def cmd(i: int) -> list[str]:
        return [
            EEGCACHE,
            "resolve",
            "--repo",
            str(project),
            "cache=volume_first",
            f"cache.volume_root={tmp_path / f'vol{i}'}",
        ]

    def absent_or_whole(i: int) -> bool:
        return not final(i).exists() or verify.verify_version(final(i), expected, deep=True).ok

    def recovered(i: int) -> bool:
        quarantine = layout.versions_root(tmp_path / f"vol{i}") / layout.QUARANTINE
        return files(final(i)) == clean and not quarantine.exists()

    seconds = timed(cmd(99), project)
    kill_rounds("resolve", cmd, project, seconds, absent_or_whole, recovered)


# --- corruption matrix on a volume holding two versions ------------------------------------------------------


@pytest.fixture(scope="module")
def second_version(project, tmp_path_factory, s3_server) -> Path:
    """A clone whose cache is built with other params (another version), pushed to the same remote prefix."""
    work = tmp_path_factory.mktemp("second")
    clone = work / "clone"
    sh("git", "clone", "-q", str(project), str(clone), cwd=work)
    shutil.copytree(project / "data", clone / "data")
    connect(clone, s3_server, dvc.remote_settings(project)["url"].split("/", 3)[3])
    sh("eegcache", "params", "preprocess.clip=5.0", cwd=clone)
    sh("dvc", "repro", "build_cache", cwd=clone)
    dvc.push(clone)
    return clone


def _rewrite_metadata(key: str, value) -> Callable[[Path], None]:
    def change(path: Path) -> None:
        meta = path / store.METADATA_NAME
        data = json.loads(meta.read_text())
        data[key] = value
        meta.chmod(0o644)
        meta.unlink()  # a new file: the DVC cache object it was linked to stays intact
        meta.write_text(json.dumps(data))

    return change


def _on_npz(how: str) -> Callable[[Path], None]:
    def change(path: Path) -> None:
        victim = sorted(path.rglob("*.npz"))[0]
        if how == "delete":
            victim.unlink()
            return
        victim.chmod(0o644)
        if how == "truncate":
            os.truncate(victim, victim.stat().st_size // 2)
        else:  # flip one byte in the middle, same size
            with open(victim, "r+b") as handle:
                handle.seek(victim.stat().st_size // 2)
                byte = handle.read(1)
                handle.seek(-1, os.SEEK_CUR)
                handle.write(bytes([byte[0] ^ 0x01]))

    return change


def _stray(path: Path) -> None:
    (path / "train" / "stray.npz").write_bytes(b"not a recording")


MATRIX = {
    # case: (change, the level that must detect it, words of the reason)
    "truncated file": (_on_npz("truncate"), "fast", "bytes, metadata says"),
    "flipped byte": (_on_npz("flip"), "deep", "content hash differs"),
    "deleted file": (_on_npz("delete"), "fast", "missing"),
    "stray extra file": (_stray, "fast", "not in the metadata"),
    "metadata: wrong split policy": (
        _rewrite_metadata("split_policy", "patient_disjoint"),
        "fast",
        "its file list makes version",
    ),
    "metadata: wrong params hash": (_rewrite_metadata("params_hash", "0" * 64), "fast", "its file list makes version"),
    "metadata: wrong schema": (_rewrite_metadata("schema_version", 99), "fast", "schema version 99"),
}
BYSTANDER = ("notes/keep.txt", b"the user's file\n")


@pytest.mark.parametrize("case", list(MATRIX))
def test_corruption_matrix(project, second_version, tmp_path, case):
    change, level, words = MATRIX[case]
    vol = tmp_path / "vol"
    (vol / BYSTANDER[0]).parent.mkdir(parents=True)
    (vol / BYSTANDER[0]).write_bytes(BYSTANDER[1])
    v1 = Path(resolve.resolve(settings(project, vol, "cache=volume_first"), project).path)
    v2 = Path(
        resolve.resolve(settings(second_version, vol, "cache=volume_first", "preprocess.clip=5.0"), second_version).path
    )
    v2_files = files(v2)
    change(v1)
    if level == "deep":  # fast must not read content: it accepts the same-size change, deep must not
        fast = resolve.resolve(settings(project, vol, "cache=offline"), project)
        assert fast.source == "volume"
    with pytest.raises(resolve.ResolveError) as caught:
        resolve.resolve(settings(project, vol, "cache=offline", f"cache.validation={level}"), project)
    reason = caught.value.report.attempts[0].reason
    assert words in reason, reason
    detected = not v1.exists() and len(list((v1.parent / layout.QUARANTINE).glob(f"{v1.name}.*.why.txt"))) == 1
    others_intact = files(v2) == v2_files and (vol / BYSTANDER[0]).read_bytes() == BYSTANDER[1]
    fixed = resolve.resolve(settings(project, vol, "cache=volume_first"), project)
    recovered = files(Path(fixed.path)) == files(project / "cache" / "tusz")
    record("volume corruption", case, detected and others_intact, recovered, level=level)
    assert detected and others_intact and recovered


@pytest.mark.parametrize("case", ["object removed from the remote", ".dir removed from the remote"])
def test_remote_missing_objects_fall_to_the_next_source(project, tmp_path, s3_server, case):
    version = dvc.version_at(project)
    listing = json.loads(
        (project / ".dvc" / "cache" / "files" / "md5" / version.hash[:2] / version.hash[2:]).read_text()
    )
    oid = listing[0]["md5"] if case.startswith("object") else version.hash
    url = dvc.remote_settings(project)["url"]
    sh(
        str(BIN / "s5cmd"),
        "--endpoint-url",
        s3_server.endpoint_url,
        "rm",
        f"{url}/{objects.object_key(oid)}",
        cwd=tmp_path,
        env=s3_server.env(),
    )
    detected = not verify.verify_remote(project).ok
    mount = tmp_path / "mount"
    shutil.copytree(project / ".dvc" / "cache", mount)
    report = resolve.resolve(
        settings(project, tmp_path / "vol", "cache.sources=[remote,mount]", f"cache.mount_point={mount}"), project
    )
    fell_through = [(a.source, a.outcome) for a in report.attempts] == [("remote", "rejected"), ("mount", "used")]
    assert "not" in report.attempts[0].reason and oid[2:] in report.attempts[0].reason
    repaired = dvc.push(project) >= 1 and verify.verify_remote(project, deep=True).ok
    record("remote corruption", case, detected and fell_through, repaired)
    assert detected and fell_through and repaired
    assert files(Path(report.path)) == files(project / "cache" / "tusz")


# --- remote faults: the resolver skips the remote with the cause and falls to the next source -----------------


def _remote_fault(case: str, clone: Path, server, tmp_path: Path) -> str:
    """Break the clone's remote as ``case`` says; returns words the skip reason must hold."""

    prefix = dvc.remote_settings(clone)["url"].split("/", 3)[3]
    if case == "wrong credentials":
        dvc.configure_access(clone, secret_key="not-the-secret")
        return "SignatureDoesNotMatch"
    if case == "bucket missing":
        dvc.configure(
            clone,
            f"s3://no-such-bucket/{prefix}",
            endpoint_url=server.endpoint_url,
            access_key=server.access_key,
            secret_key=server.secret_key,
        )
        return "NoSuchBucket"
    state = tmp_path / "stopped-s3"  # "server stopped": a server of its own, started then stopped
    own = s3local.start(state)
    s3local.stop(state, timeout_s=5)
    dvc.configure_access(clone, endpoint_url=own.endpoint_url)
    return "Could not connect"


@pytest.mark.parametrize("case", ["wrong credentials", "bucket missing", "server stopped"])
def test_remote_faults_skip_the_remote_and_never_build_unasked(project, tmp_path, s3_server, case):
    clone = tmp_path / "clone"
    sh("git", "clone", "-q", str(project), str(clone), cwd=tmp_path)
    shutil.copytree(project / ".dvc" / "cache", tmp_path / "mount")
    connect(clone, s3_server, dvc.remote_settings(project)["url"].split("/", 3)[3])
    words = _remote_fault(case, clone, s3_server, tmp_path)
    vol = tmp_path / "vol"
    report = resolve.resolve(
        settings(clone, vol, "cache.sources=[remote,mount]", f"cache.mount_point={tmp_path / 'mount'}"), clone
    )
    skipped = report.attempts[0]
    assert (skipped.source, skipped.outcome) == ("remote", "skipped") and words in skipped.reason, skipped.reason
    assert "remote 'storage'" in skipped.reason and report.source == "mount"
    with pytest.raises(resolve.ResolveError) as caught:  # no other source: an error, and no build without allow_build
        resolve.resolve(settings(clone, tmp_path / "vol2", "cache.sources=[remote,build]"), clone)
    assert "build: skipped: building is not allowed" in str(caught.value)
    assert not (clone / "cache" / "tusz").exists()  # nothing was built
    record("remote faults", case, True, report.source == "mount")
