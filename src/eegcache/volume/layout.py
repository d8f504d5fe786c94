"""Where cache versions live on a persistent volume: ``<volume>/cache/tusz/<hash>/``, one directory per version,
beside the volume's own DVC project and cache (``.dvc/cache``), the quarantine (``.quarantine/``) and the hidden
partial checkouts of installs in progress. Which directories are versions, and their use (for prune)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from eegcache import locks
from eegcache.errors import CacheError
from eegcache.versions import objects

VERSIONS_DIR = Path("cache") / "tusz"
QUARANTINE = ".quarantine"
DVC_CACHE = Path(".dvc") / "cache"
PARTIAL = ".partial-"
STAGING = "build"  # <volume>/build/<params hash>/: a sharded build's outputs before they are installed
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


@contextlib.contextmanager
def in_use(versions: Path) -> Iterator[None]:
    """The volume's shared lock, for the whole of an install or a resolve (and its answer): waits while a prune
    runs, and keeps a prune from removing what is being installed or announced."""
    versions.mkdir(parents=True, exist_ok=True)
    with locks.held(versions / VOLUME_LOCK, shared=True, wait=True):
        yield


@contextlib.contextmanager
def pruning(versions: Path) -> Iterator[None]:
    """The volume's lock, exclusive and without waiting: CacheError naming the holders when an install or a
    resolve is running."""
    try:
        with locks.held(versions / VOLUME_LOCK):
            yield
    except locks.Busy as exc:
        raise CacheError(
            f"the volume is in use ({exc.holders}): prune when no install or resolve runs", versions
        ) from exc
