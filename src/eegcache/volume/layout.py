"""Where cache versions live on a persistent volume: ``<volume>/cache/tusz/<hash>/``, one directory per version,
beside the volume's own DVC project and cache (``.dvc/cache``), the quarantine (``.quarantine/``) and the hidden
partial checkouts of installs in progress. Which directories are versions, and their use (for prune)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from eegcache import locks, trust
from eegcache.errors import CacheError
from eegcache.versions import objects

VERSIONS_DIR = Path("cache") / "tusz"
QUARANTINE = ".quarantine"
DVC_CACHE = Path(".dvc") / "cache"
PARTIAL = ".partial-"
STAGING = "build"  # <volume>/build/<params hash>/: a sharded build's outputs before they are installed
MARKER = ".eegcache-volume"  # what makes a directory eegcache's to write versions into (volume.install)
VOLUME_LOCK = ".volume.lock"  # shared by installs and resolves, exclusive for prune (eegcache.locks)


def versions_root(volume_root: Path) -> Path:
    """The directory holding one directory per version (also the volume's DVC project)."""
    return Path(volume_root) / VERSIONS_DIR


def installed(volume_root: Path) -> list[Path]:
    """Version directories installed on the volume (named by their hash, with their ``.dir`` object in the
    volume's DVC cache; a look-alike directory someone else made is not one), most recently used first."""
    root = versions_root(volume_root)
    if not root.is_dir():
        return []
    found = [
        p
        for p in root.iterdir()
        if objects.is_object_id(p.name)
        and p.is_dir()
        and not p.is_symlink()
        and objects.cache_path(root / DVC_CACHE, f"{p.name}.dir").is_file()
    ]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def mark_used(path: Path) -> None:
    """Record a use (the directory's mtime), which :func:`prune` ranks by."""
    os.utime(path)


def staging_dir(volume_root: Path, params_hash: str) -> Path:
    """Where a sharded build of stage params ``params_hash`` writes on the volume before its version is installed."""
    return Path(volume_root) / STAGING / params_hash[:16]


def _own_folder(versions: Path, root: Path | None) -> Path:
    """``versions`` as a folder to write in: below ``root`` (a volume root) every component a real folder of ours
    (made 0755 if missing, a link refused); without ``root`` (a pull-version target, the user's choice) as given."""
    if root is not None:
        return trust.folders_below(root, versions.relative_to(root).as_posix())
    versions.mkdir(parents=True, exist_ok=True)
    return versions


def dvc_folders(versions: Path) -> None:
    """The volume project's ``.dvc``, ``.dvc/cache``, ``.dvc/tmp`` and ``.dvc/site`` as real folders of ours
    before DVC is pointed there: DVC follows links, so one planted at any of them would take its writes outside."""
    for sub in ("cache", "tmp", "site"):
        trust.folders_below(versions, ".dvc", sub)


@contextlib.contextmanager
def in_use(versions: Path, root: Path | None = None) -> Iterator[None]:
    """The volume's shared lock, for the whole of an install or a resolve (and its answer): waits while a prune
    runs, and keeps a prune from removing what is being installed or announced (``root``: the volume root, below
    which no link is followed, see :func:`_own_folder`). Nothing is written to take it
    (a resolve that refuses leaves the volume as it was); on a read-only volume, which no prune can change, it
    is taken on the existing file or not at all."""
    try:
        fd = locks.open_own(_own_folder(versions, root) / VOLUME_LOCK)
    except OSError as exc:
        if exc.errno not in (errno.EROFS, errno.EACCES):
            raise
        try:
            fd = os.open(versions / VOLUME_LOCK, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            yield  # a read-only volume without a lock file: nothing on it can be pruned from here
            return
    with os.fdopen(fd, "rb") as handle:
        fcntl.flock(handle, fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def pruning(versions: Path) -> Iterator[None]:
    """The volume's lock, exclusive and without waiting: CacheError naming the holders when an install or a
    resolve is running."""
    try:
        with locks.held(versions / VOLUME_LOCK):
            yield
    except locks.Busy as exc:
        raise CacheError(
            "the volume is in use (an install or a resolve is running): prune when none runs", versions
        ) from exc
