"""Damaged copies moved aside, never deleted: ``<versions>/.quarantine/<name>.<n>/`` with a note of why, and the
volume's DVC cache objects they were linked to evicted when their content no longer matches their name, so the
next fetch brings them again."""

from __future__ import annotations

import os
from pathlib import Path

from eegcache import trust
from eegcache.core import store
from eegcache.errors import CacheError
from eegcache.versions import objects
from eegcache.volume.layout import DVC_CACHE, QUARANTINE


def quarantine(path: Path, why: list[str] | tuple[str, ...], damaged: tuple[str, ...] = ()) -> Path | None:
    """Move a damaged version directory to ``<versions>/.quarantine/<name>.<n>/`` with ``<name>.<n>.why.txt``
    beside it, and evict the corrupt DVC cache objects of its ``damaged`` files. Returns where it went (None
    if another process moved it first). Nothing is deleted but objects whose content no longer matches their
    name."""
    root = path.parent
    _evict_corrupt_objects(root / DVC_CACHE, path, damaged)
    folder = root / QUARANTINE
    folder.mkdir(exist_ok=True)
    if folder.is_symlink() or not folder.is_dir():
        raise CacheError("not a directory of ours (a symbolic link?); nothing was moved", folder)
    for n in range(1, 10_000):
        dest = folder / f"{path.name}.{n}"
        if dest.exists():
            continue
        try:
            path.rename(dest)
        except FileNotFoundError:
            return None  # someone else quarantined it
        except OSError:
            if dest.exists():
                continue  # lost a race for this name
            raise
        note = dest.with_name(f"{dest.name}.why.txt")
        fd = os.open(note, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "w") as handle:
            handle.write(f"moved aside from {path}\n" + "".join(f"- {line}\n" for line in why))
        return dest
    raise CacheError("too many quarantined copies; inspect and clear them", folder)


def _evict_corrupt_objects(cache_dir: Path, path: Path, damaged: tuple[str, ...]) -> None:
    """Unlink the objects of the volume's DVC cache that the version at ``path`` was linked to and that no longer
    hash to their name (or have another size than the version's metadata records), so the next fetch brings them
    again. Ids and sizes come from the version's own listing and metadata objects in that cache (each checked
    against its name; damaged ones are evicted too), never from the damaged copy. ``damaged`` files are re-hashed;
    the others are size-checked, or re-hashed when the metadata object itself is damaged."""
    version = f"{path.name}.dir"
    listing_path = objects.cache_path(cache_dir, version) if damaged and objects.is_object_id(version) else None
    if listing_path is None or not listing_path.is_file():
        return
    try:
        listing = objects.parse_listing(listing_path.read_bytes(), version, listing_path)
    except (objects.ObjectError, trust.UnsafeName):
        listing_path.unlink()  # it would be linked again: the next fetch brings a good one
        return
    sizes = (
        _sizes(objects.cache_path(cache_dir, listing[store.METADATA_NAME])) if store.METADATA_NAME in listing else None
    )
    for rel, oid in listing.items():
        obj = objects.cache_path(cache_dir, oid)
        if not obj.is_file():
            continue
        hashed = rel in damaged or sizes is None
        if (hashed and store.md5_file(obj) != oid) or (not hashed and obj.stat().st_size != sizes.get(rel, -1)):
            obj.unlink()  # its content no longer matches its name: garbage that would be linked again


def _sizes(metadata_object: Path) -> dict[str, int] | None:
    """File sizes the version's metadata object records, None if that object is damaged (then it is evicted)."""
    try:
        data = metadata_object.read_bytes()
        if store.md5_bytes(data) == objects.object_id(metadata_object.as_posix()):
            return {rel: entry["size"] for rel, entry in trust.loads_json(data)["files"].items()} | {
                store.METADATA_NAME: len(data)
            }
        metadata_object.unlink()
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None
