"""Where cache versions live on a persistent volume: ``<volume>/cache/tusz/<hash>/``, one directory per version,
beside the volume's own DVC project and cache (``.dvc/cache``), the quarantine (``.quarantine/``) and the hidden
partial checkouts of installs in progress. Which directories are versions, and their use (for prune)."""

from __future__ import annotations

import os
from pathlib import Path

from eegcache.versions import objects

VERSIONS_DIR = Path("cache") / "tusz"
QUARANTINE = ".quarantine"
DVC_CACHE = Path(".dvc") / "cache"
PARTIAL = ".partial-"
STAGING = "build"  # <volume>/build/<params hash>/: a sharded build's outputs before they are installed


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
