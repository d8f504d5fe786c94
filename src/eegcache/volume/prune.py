"""Free a volume: remove all but the most recently used versions and the DVC cache objects only they used."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from eegcache.core import store
from eegcache.errors import CacheError
from eegcache.versions import objects
from eegcache.volume.layout import DVC_CACHE, installed, pruning, versions_root


@dataclass(frozen=True)
class Pruned:
    removed: tuple[str, ...]
    kept: tuple[str, ...]
    objects_removed: int
    bytes_freed: int


def prune(volume_root: Path, keep: int, in_use: set[str]) -> Pruned:
    """Remove all but the ``keep`` most recently used versions (never one named in ``in_use``, by directory name
    or hash) and the DVC cache objects only they used. Quarantined copies and other files stay."""
    if keep < 0:
        raise CacheError(f"--keep {keep}: expected 0 or more versions to keep")
    if not versions_root(volume_root).is_dir():
        return Pruned((), (), 0, 0)  # nothing installed: nothing to lock or remove
    with pruning(versions_root(volume_root)):
        return _prune(volume_root, keep, {objects.dirname(name) for name in in_use})


def _prune(volume_root: Path, keep: int, in_use: set[str]) -> Pruned:
    """:func:`prune`'s body, with the volume's lock held exclusively."""
    versions = installed(volume_root)
    kept = [p for p in versions if p.name in in_use]
    kept += [p for p in versions if p.name not in in_use][: max(0, keep - len(kept))]
    removed = [p for p in versions if p not in kept]
    still_used = set().union(*(_objects(p) for p in kept)) if kept else set()
    orphans = set().union(*(_objects(p) for p in removed)) - still_used if removed else set()
    for path in removed:
        shutil.rmtree(path)
    cache_dir = versions_root(volume_root) / DVC_CACHE
    count = freed = 0
    for oid in sorted(orphans):
        obj = objects.cache_path(cache_dir, oid)
        if obj.is_file():
            freed += obj.stat().st_size
            obj.unlink()
            count += 1
    return Pruned(tuple(p.name for p in removed), tuple(p.name for p in kept), count, freed)


def _objects(path: Path) -> set[str]:
    """Object ids a version directory uses: its files' md5s, its metadata's and its ``.dir`` (ids that are not
    object ids, from a damaged or hostile metadata file, are left out: they name nothing of ours)."""
    try:
        files = store.read_metadata(path)["files"]
        ids = {entry.get("md5") for entry in files.values()} | {store.md5_file(path / store.METADATA_NAME)}
    except (CacheError, KeyError, TypeError, AttributeError, OSError):
        ids = set()
    return {oid for oid in ids if isinstance(oid, str) and objects.is_object_id(oid)} | {path.name + ".dir"}
