"""The build owns only what it wrote: others' files in out_dir, one build at a time (the lock), out_dir against
raw_dir, full disks and file-size limits, and malformed metadata through the CLI."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from eegcache.builder import ownership
from eegcache.builder.plan import make_plan
from eegcache.builder.run import run_build
from eegcache.builder.shards import build_share, merge_shards, share_of, split_plan
from eegcache.core import store
from eegcache.errors import CacheError, ConfigError
from eegcache.versions.verify import verify
from tests.conftest import make_config
from tests.integration.projects import read_only
from tests.integration.test_build import tree_bytes
from tests.integration.test_cli import EEGCACHE, build_args, run

pytestmark = pytest.mark.integration


@pytest.fixture
def built(base_config, corpus_copy, tmp_path):
    cfg = make_config(base_config, corpus_copy, tmp_path / "work")
    return cfg, run_build(cfg)


def _plant_user_files(cache: Path) -> dict[Path, bytes]:
    files = {
        cache / "model_weights.npz": b"a user's weights",
        cache / "sub" / "other.npz": b"another user file",
        cache / "train" / "notes.txt": b"notes",
    }
    for path, data in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def test_user_files_in_a_cache_are_refused_never_deleted(built, corpus_copy):
    """Without and with planned changes (a patient removed: its outputs would go): the rebuild refuses, naming the
    files, and changes nothing; once they are moved away it removes exactly the build's own stale outputs."""
    cfg, first = built
    cache = first.cache_dir
    user = _plant_user_files(cache)
    before = tree_bytes(cache)
    with pytest.raises(CacheError, match="3 file\\(s\\) the build did not write: model_weights.npz, sub/other.npz"):
        run_build(cfg)
    assert tree_bytes(cache) == before
    patient = next((corpus_copy / "edf" / "train").iterdir())
    shutil.rmtree(patient)
    with pytest.raises(CacheError, match="train/notes.txt"):
        run_build(cfg)
    assert tree_bytes(cache) == before and all(path.read_bytes() == data for path, data in user.items())
    for path in user:
        path.unlink()
    again = run_build(cfg)
    assert again.removed == len(first.metadata["files"]) - len(again.metadata["files"]) > 0
    assert verify(cache, deep=True).ok


def test_a_directory_that_is_not_a_cache_is_refused(base_config, demo_corpus, tmp_path):
    cfg = make_config(base_config, demo_corpus, tmp_path)
    out = Path(cfg.build.out_dir)
    user = _plant_user_files(out)
    with pytest.raises(CacheError) as err:
        run_build(cfg)
    assert "not an eegcache cache" in str(err.value) and str(out) in str(err.value)
    assert "model_weights.npz" in str(err.value) and "sub/other.npz" in str(err.value)
    assert sorted(p for p in out.rglob("*") if p.is_file()) == sorted(user)
    with pytest.raises(CacheError, match="not an eegcache cache"):
        build_share(cfg, share_of(cfg, [s.rels for s in split_plan(make_plan(cfg, Path()), 1)][0]))


def test_paths_in_the_records_never_lead_out_of_out_dir(built, tmp_path):
    """Metadata and journal are data: entries naming paths outside out_dir (by '..', absolute, or through a
    symlinked folder) are not the build's; the files there survive a rebuild that drops those entries."""
    cfg, first = built
    cache = first.cache_dir
    outside = tmp_path / "outside"
    outside.mkdir()
    victims = [outside / "a.npz", outside / "b.npz", tmp_path / "work" / "cache" / "c.npz"]
    for victim in victims:
        victim.write_bytes(b"not the build's")
    metadata = json.loads((cache / store.METADATA_NAME).read_text())
    entry = next(iter(metadata["files"].values()))
    for rel in ("../c.npz", str(victims[0]), "train/./../../c.npz"):
        metadata["files"][rel] = entry
    (cache / store.METADATA_NAME).write_text(json.dumps(metadata))
    (cache / store.JOURNAL_NAME).write_text(json.dumps({"rel": "../../../outside/b.npz"}) + "\n")
    run_build(cfg)
    assert all(victim.exists() for victim in victims) and verify(cache, deep=True).ok
    os.symlink(outside, cache / "linked")
    with pytest.raises(CacheError, match="linked \\(a symlink\\)"):
        run_build(cfg)


def test_temp_files_of_killed_writes_are_removed_only_when_ours(built):
    cfg, first = built
    cache = first.cache_dir
    ours = [
        cache / "train" / f".{next(iter(first.metadata['files'])).split('/')[1]}.tmp-abcd_123",
        cache / f".{store.METADATA_NAME}.tmp-zzzzzzzz",
    ]
    for path in ours:
        path.write_bytes(b"half written")
    assert run_build(cfg).removed == 2 and not any(path.exists() for path in ours)
    theirs = cache / "train" / ".notes.txt.tmp-abcd1234"
    theirs.write_bytes(b"a user's temp file")
    with pytest.raises(CacheError, match="notes.txt.tmp-abcd1234"):
        run_build(cfg)
    assert theirs.exists()


@pytest.mark.parametrize("where", ["same", "inside", "around"])
def test_out_dir_and_raw_dir_must_not_overlap(base_config, corpus_copy, tmp_path, where):
    out = {"same": corpus_copy, "inside": corpus_copy / "edf" / "cache", "around": corpus_copy.parent}[where]
    cfg = make_config(base_config, corpus_copy, tmp_path, build={"out_dir": str(out)})
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(ConfigError, match=f"build.out_dir = {out} (is|is inside|contains) data.raw_dir"):
        run_build(cfg)
    with pytest.raises(ConfigError):
        [s.rels for s in split_plan(make_plan(cfg, Path()), 2)]
    assert sorted(tmp_path.rglob("*")) == before


def test_metrics_inside_out_dir_is_refused(base_config, demo_corpus, tmp_path):
    metrics = str(tmp_path / "cache" / "tusz" / "stats.json")
    cfg = make_config(base_config, demo_corpus, tmp_path, build={"metrics_file": metrics})
    with pytest.raises(ConfigError, match="build.metrics_file = .* is inside build.out_dir"):
        run_build(cfg)


def test_the_lock_is_beside_out_dir_and_names_its_holder(built):
    cfg, first = built
    lock = ownership.lock_file(first.cache_dir)
    assert lock.parent == first.cache_dir.parent and lock.exists()
    assert not [p for p in first.cache_dir.rglob("*") if "lock" in p.name], "DVC would version it"
    with ownership.lock(first.cache_dir, shared=True):  # as a shard holds it
        with pytest.raises(CacheError) as err:
            run_build(cfg)
        assert f"pid {os.getpid()} on host {socket.gethostname()} (shared" in str(err.value)
    assert verify(first.cache_dir, deep=True).ok


def test_shards_share_the_lock_and_exclude_a_whole_build(base_config, demo_corpus, tmp_path):
    cfg = make_config(base_config, demo_corpus, tmp_path)
    out = Path(cfg.build.out_dir)
    plan = [s.rels for s in split_plan(make_plan(cfg, Path()), 2)]
    with ownership.lock(out, shared=True):  # another shard of the same build still running
        first = build_share(cfg, share_of(cfg, plan[0]))
    with ownership.lock(out):  # a run_build or merge running
        with pytest.raises(CacheError, match=f"pid {os.getpid()} on host .* \\(exclusive"):
            build_share(cfg, share_of(cfg, plan[1]))
    results = [first, build_share(cfg, share_of(cfg, plan[1]))]
    with ownership.lock(out, shared=True), pytest.raises(CacheError, match="another eegcache build"):
        merge_shards(cfg, results)  # a shard (of this or another sharded build) still writing
    merge_shards(cfg, results)
    assert verify(out, deep=True).ok


def test_a_sharded_build_over_a_cache_removes_outputs_the_old_metadata_owned(base_config, corpus_copy, tmp_path):
    cfg = make_config(base_config, corpus_copy, tmp_path)
    first = run_build(cfg)
    shutil.rmtree(next((corpus_copy / "edf" / "train").iterdir()))
    merged = merge_shards(
        cfg, [build_share(cfg, share_of(cfg, rels)) for rels in [s.rels for s in split_plan(make_plan(cfg, Path()), 2)]]
    )
    assert len(merged["files"]) < len(first.metadata["files"]) and verify(first.cache_dir, deep=True).ok


def _lock_pid(lock: Path) -> int | None:
    try:
        return json.loads(lock.read_text().splitlines()[-1])["pid"]
    except (OSError, IndexError, ValueError, KeyError):
        return None


def test_a_second_build_fails_at_once_naming_the_first(project, demo_corpus, tmp_path):
    """Build A takes the lock and is paused (SIGSTOP on its process group: it and its workers); build B into the
    same out_dir with other params exits 2 naming A's pid and host; A resumes and completes a correct cache."""
    work = tmp_path / "w"
    args = [*EEGCACHE, *build_args(demo_corpus, work, "build.workers=1", "build.progress=false")]
    first = subprocess.Popen(args, cwd=project, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lock = ownership.lock_file(work / "cache")
    deadline = time.monotonic() + 60
    while _lock_pid(lock) != first.pid and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    os.killpg(first.pid, signal.SIGSTOP)
    try:
        assert first.poll() is None, "build A finished before it could be paused"
        started = time.monotonic()
        second = run(*build_args(demo_corpus, work, "preprocess.dtype=float32"), cwd=project, check=False)
        assert time.monotonic() - started < 30, "the second build should fail at once, not wait"
    finally:
        os.killpg(first.pid, signal.SIGCONT)
    assert second.returncode == 2 and "Traceback" not in second.stderr
    assert f"pid {first.pid} on host {socket.gethostname()} (exclusive" in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1, second.stderr
    assert first.wait(timeout=300) == 0, first.stderr.read()
    assert "OK (deep)" in run("verify", str(work / "cache"), "--deep", cwd=project).stdout
    assert json.loads((work / "cache" / store.METADATA_NAME).read_text())["dtype"] == "float16"


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("project")
    shutil.copytree(Path(__file__).resolve().parents[2] / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    return root


def _file_size_limit(limit: int):
    def apply() -> None:  # in the child, before exec: the CLI itself ignores SIGXFSZ, so writes fail with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    return apply


def test_a_file_size_limit_is_one_clear_error_and_a_rerun_repairs(project, demo_corpus, tmp_path):
    """RLIMIT_FSIZE below an output's size (what a full disk does to a build, without root or a small mount):
    `eegcache build` exits 2 with one line naming the file and the cause, publishes no metadata, and a rerun
    without the limit completes a cache equal to a clean build."""
    work, clean = tmp_path / "w", tmp_path / "clean"
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run(
        [*EEGCACHE, *build_args(demo_corpus, work, "build.progress=false")],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=_file_size_limit(64 * 1024),
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert ".npz: cannot write this file: file too large" in proc.stderr and "rerun" in proc.stderr
    assert not (work / "cache" / store.METADATA_NAME).exists()
    assert run("verify", str(work / "cache"), cwd=project, check=False).returncode == 1
    run(*build_args(demo_corpus, work), cwd=project)
    run(*build_args(demo_corpus, clean), cwd=project)
    assert tree_bytes(work / "cache") == tree_bytes(clean / "cache")
    assert "OK (deep)" in run("verify", str(work / "cache"), "--deep", cwd=project).stdout


def test_a_read_only_out_dir_is_one_clear_error(project, demo_corpus, tmp_path):
    (tmp_path / "w" / "cache").mkdir(parents=True)
    with read_only(tmp_path / "w" / "cache"):
        proc = run(*build_args(demo_corpus, tmp_path / "w"), cwd=project, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "the filesystem is read-only" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_disk_errors_name_the_cause():
    import errno

    err = ownership.disk_error(Path("/c/train/x.npz"), OSError(errno.ENOSPC, "No space left on device"))
    assert str(err).startswith("/c/train/x.npz: cannot write this file: no space left on the device")
    err = ownership.disk_error(Path("/c"), OSError(errno.EROFS, "Read-only file system"), "remove")
    assert "cannot remove this file: the filesystem is read-only" in str(err)


@pytest.fixture(scope="module")
def cli_cache(project, demo_corpus) -> Path:
    work = project / "built"
    run(*build_args(demo_corpus, work), cwd=project)
    return work / "cache"


@pytest.mark.parametrize("damage", ["no splits", "entry without size", "files a list"])
def test_cli_commands_on_malformed_metadata_are_one_clear_error(project, demo_corpus, cli_cache, tmp_path, damage):
    work = tmp_path / "w"
    cache = Path(shutil.copytree(cli_cache, work / "cache"))
    metadata = json.loads((cache / store.METADATA_NAME).read_text())
    if damage == "no splits":
        del metadata["splits"]
    elif damage == "entry without size":
        del next(iter(metadata["files"].values()))["size"]
    else:
        metadata["files"] = []
    (cache / store.METADATA_NAME).write_text(json.dumps(metadata))
    for args, code in (
        (["summary", str(cache)], 2),
        (["verify", str(cache)], 1),
        (["verify", str(cache), "--deep"], 1),
        (["train", f"build.out_dir={cache}", f"train.metrics_file={work / 't.json'}"], 2),
    ):
        proc = run(*args, cwd=project, check=False)
        assert proc.returncode == code and "Traceback" not in proc.stderr, (args, proc.stderr)
        assert "malformed metadata" in proc.stderr + proc.stdout, (args, proc.stdout, proc.stderr)
    if damage == "files a list":  # the outputs are at the planned paths: the build takes them and repairs the cache
        run(*build_args(demo_corpus, work), cwd=project)
        assert "OK (deep)" in run("verify", str(cache), "--deep", cwd=project).stdout
