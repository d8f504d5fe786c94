"""A throw-away eegcache project for integration tests: a git repo with the project's DVC files, a built demo
cache and the remote `storage` on a real S3 server; and the shell helper the tests drive git and DVC with."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

from eegcache import config
from eegcache.versions import dvc
from tests.conftest import REPO

BIN = Path(sys.executable).parent
GIT_IDENTITY = {
    f"GIT_{role}_{field}": value
    for role in ("AUTHOR", "COMMITTER")
    for field, value in (("NAME", "eegcache tests"), ("EMAIL", "tests@eegcache.invalid"))
}


def sh(*args: str, cwd: Path, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
        **GIT_IDENTITY,
        **(env or {}),
    }
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=env, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def connect(root: Path, server, prefix: str) -> None:
    dvc.configure(
        root,
        f"s3://{server.bucket}/{prefix}",
        endpoint_url=server.endpoint_url,
        access_key=server.access_key,
        secret_key=server.secret_key,
        jobs=8,
    )


def _not_this_machines(folder: str, names: list[str]) -> list[str]:
    """copytree's ignore: a developer's own conf/local/default.yaml stays out of test projects."""
    return ["default.yaml"] if Path(folder).name == "local" else []


def make_repo(root: Path, corpus: Path) -> Path:
    """At ``root``: a fresh clone-like git + DVC repo with the project's DVC files, conf/ and package source,
    ``corpus`` as its raw data and ``params.yaml`` composed; nothing built."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("dvc.yaml", "conf", "src"):
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=_not_this_machines)
        else:
            shutil.copy(src, root / name)
    shutil.copytree(corpus, root / "data" / "tusz_demo")
    sh("git", "init", "-q", cwd=root)
    sh("dvc", "init", "-q", cwd=root)
    shutil.copy(REPO / ".dvc" / "config", root / ".dvc" / "config")
    (root / ".gitignore").write_text("/data/\n/.eegcache/\n__pycache__/\n")
    sh("eegcache", "params", cwd=root)
    return root


def make_project(root: Path, corpus: Path, server, push: bool = False) -> Path:
    """A copy of :func:`built_repo` (the cache built by ``dvc repro`` once per session) at ``root``, with ``storage``
    on ``server`` under a fresh prefix, committed and tagged ``cache-v1``; with ``push``, the version is on the
    remote too. Each project is its own: a test may change its files, git history and remote prefix freely."""
    shutil.copytree(built_repo(corpus), root, symlinks=True, dirs_exist_ok=True)
    connect(root, server, f"t-{uuid.uuid4().hex[:8]}")
    sh("git", "add", "-A", cwd=root)
    sh("git", "commit", "-qm", "cache v1", cwd=root)
    sh("git", "tag", "cache-v1", cwd=root)
    if push:
        dvc.push(root)
    return root


_BUILT: dict[Path, Path] = {}


def built_repo(corpus: Path) -> Path:
    """:func:`make_repo` with the cache built by ``dvc repro``, once per session and corpus (beside the corpus, in
    the session's temporary directory): what every :func:`make_project` copies. Never changed after it is built."""
    if corpus not in _BUILT:
        root = make_repo(corpus.parent / f"{corpus.name}-built-project", corpus)
        sh("dvc", "repro", cwd=root)
        _BUILT[corpus] = root
    return _BUILT[corpus]


def mirror_remote(root: Path, server, where: Path) -> Path:
    """A copy at ``where`` of the project's remote prefix (s5cmd from the S3 server): a stand-in for a bucket mount."""
    url = dvc.remote_settings(root)["url"]
    sh(
        str(BIN / "s5cmd"),
        "--endpoint-url",
        server.endpoint_url,
        "cp",
        f"{url}/*",
        f"{where}/",
        cwd=where.parent,
        env=server.env(),
    )
    return where


def settings(root: Path, vol: Path, *overrides: str) -> config.Config:
    """The project's conf/ composed with a volume at ``vol`` and Hydra ``overrides`` (as `eegcache resolve` does)."""
    return config.load(root, [f"cache.volume_root={vol}", *overrides])


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[Path]:
    """``path`` made read-only for the block by a read-only bind mount onto itself: the tests run as root, where file
    modes do not stop writes (the kernel's read-only mount does, for root too: EROFS)."""
    sh("mount", "--bind", str(path), str(path), cwd=path)
    try:
        sh("mount", "-o", "remount,bind,ro", str(path), cwd=path)
        yield path
    finally:
        sh("umount", str(path), cwd=path.parent)


def record(operation: str, case: str, detected: bool, recovered: bool, lost: int = 0, **extra) -> None:
    """One fault case for the reliability table (``bench/reliability.py``), when ``EEGCACHE_FAULT_LOG`` names a file."""
    log = os.environ.get("EEGCACHE_FAULT_LOG")
    if log:
        row = {
            "operation": operation,
            "case": case,
            "detected": detected,
            "recovered": recovered,
            "lost": lost,
            **extra,
        }
        with open(log, "a") as handle:
            handle.write(json.dumps(row) + "\n")
