"""Cache versions on a persistent volume: ``<volume>/cache/tusz/<hash>/``, one directory per version.

A version directory is accepted only as the version asked for: its files match its metadata (names and sizes;
content hashes under ``deep``), the metadata's file list and own bytes hash to the expected DVC version hash,
and the metadata's split policy, params hash and schema version are the ones the configuration expects. A
directory that fails is moved aside to ``.quarantine/`` with a note of why, never deleted; corrupt objects it
shared with the volume's DVC cache are evicted so the next pull fetches them again. Nothing else on the volume
is touched. Pure file-system code: no DVC, no cloud imports (``fetch`` only names the object layout here).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eegcache import fetch, validate
from eegcache.core import store
from eegcache.errors import CacheError

VERSIONS_DIR = Path("cache") / "tusz"
QUARANTINE = ".quarantine"
DVC_CACHE = Path(".dvc") / "cache"
_VERSION_NAME = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class Expected:
    """What a run needs: the DVC version hash (``<md5>.dir``; None when only a build can tell) and the
    metadata facts its configuration implies."""

    hash: str | None
    split_policy: str
    params_hash: str
    schema_version: int = store.SCHEMA_VERSION

    @property
    def dirname(self) -> str:
        if self.hash is None:
            raise CacheError("no cache version named: dvc.lock has none and none was given")
        return self.hash.removesuffix(".dir")


def versions_root(volume_root: Path) -> Path:
    """The directory holding one directory per version (also the volume's DVC project)."""
    return Path(volume_root) / VERSIONS_DIR


def tree_listing(metadata_bytes: bytes, files: dict[str, dict[str, Any]]) -> bytes:
    """The ``.dir`` object DVC writes for a cache whose metadata file holds ``metadata_bytes`` and lists ``files``
    (entries ``{"md5", "relpath"}`` sorted by path, keys sorted)."""
    entries = [{"md5": entry["md5"], "relpath": rel} for rel, entry in files.items()]
    entries.append({"md5": store.md5_bytes(metadata_bytes), "relpath": store.METADATA_NAME})
    return json.dumps(sorted(entries, key=lambda e: e["relpath"]), sort_keys=True).encode()


def tree_hash(metadata_bytes: bytes, files: dict[str, dict[str, Any]]) -> str:
    """The DVC directory hash (``<md5>.dir``) of such a cache: the md5 of its ``.dir`` object."""
    return store.md5_bytes(tree_listing(metadata_bytes, files)) + ".dir"


@dataclass(frozen=True)
class Check:
    path: Path
    problems: tuple[str, ...]
    damaged: tuple[str, ...] = ()  # files present with a wrong size or content
    files: int = 0
    bytes: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def check(path: Path, expected: Expected, deep: bool = False) -> Check:
    """Is ``path`` a complete, intact copy of the expected version? ``deep`` also hashes every file."""
    meta_path = path / store.METADATA_NAME
    try:
        metadata = store.read_metadata(path)
        metadata_bytes = meta_path.read_bytes()
    except CacheError as exc:
        return Check(path, (str(exc),))
    problems = []
    for key, want in (("split_policy", expected.split_policy), ("params_hash", expected.params_hash)):
        if metadata.get(key) != want:
            problems.append(f"{meta_path}: {key} is {metadata.get(key)!r}, the configuration expects {want!r}")
    files = metadata.get("files")
    if not isinstance(files, dict) or not all(isinstance(e, dict) and "md5" in e for e in files.values()):
        return Check(path, (*problems, f"{meta_path}: malformed metadata (no file list with md5s)"))
    if expected.hash is not None and (found := tree_hash(metadata_bytes, files)) != expected.hash:
        problems.append(f"{meta_path}: its file list makes version {found}, not the expected {expected.hash}")
    # deep: content hashes only; they equal the md5s that make up the version hash checked above
    verdict = validate.verify(path, deep=deep and not problems, threads=2 * (os.cpu_count() or 1), arrays=False)
    return Check(path, (*problems, *verdict.problems), verdict.damaged, verdict.files, verdict.bytes)


def quarantine(path: Path, why: list[str] | tuple[str, ...], damaged: tuple[str, ...] = ()) -> Path | None:
    """Move a bad version directory to ``<versions>/.quarantine/<name>.<n>/`` with ``<name>.<n>.why.txt``
    beside it, and evict the corrupt DVC cache objects of its ``damaged`` files. Returns where it went (None
    if another process moved it first). Nothing is deleted but objects whose content no longer matches their
    name."""
    root = path.parent
    _evict_corrupt_objects(root / DVC_CACHE, path, damaged)
    folder = root / QUARANTINE
    folder.mkdir(exist_ok=True)
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
        note.write_text(f"moved aside from {path}\n" + "".join(f"- {line}\n" for line in why))
        return dest
    raise CacheError("too many quarantined copies; inspect and clear them", folder)


def _evict_corrupt_objects(cache_dir: Path, path: Path, damaged: tuple[str, ...]) -> None:
    if not damaged or not cache_dir.is_dir():
        return
    try:
        files = store.read_metadata(path)["files"]
    except (CacheError, KeyError):
        return
    for rel in damaged:
        oid = files.get(rel, {}).get("md5")
        obj = fetch.cache_path(cache_dir, oid) if isinstance(oid, str) else None
        if obj is not None and obj.is_file() and store.md5_file(obj) != oid:
            obj.unlink()  # its content no longer matches its name: garbage that would be linked again


def installed(volume_root: Path) -> list[Path]:
    """Version directories installed on the volume (named by their hash, with their ``.dir`` object in the
    volume's DVC cache; a look-alike directory someone else made is not one), most recently used first."""
    root = versions_root(volume_root)
    if not root.is_dir():
        return []
    found = [
        p for p in root.iterdir()
        if _VERSION_NAME.match(p.name) and p.is_dir() and fetch.cache_path(root / DVC_CACHE, f"{p.name}.dir").is_file()
    ]  # fmt: skip
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def mark_used(path: Path) -> None:
    """Record a use (the directory's mtime), which :func:`prune` ranks by."""
    os.utime(path)


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
    in_use = {name.removesuffix(".dir") for name in in_use}
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
        obj = fetch.cache_path(cache_dir, oid)
        if obj.is_file():
            freed += obj.stat().st_size
            obj.unlink()
            count += 1
    return Pruned(tuple(p.name for p in removed), tuple(p.name for p in kept), count, freed)


def _objects(path: Path) -> set[str]:
    """Object ids a version directory uses: its files' md5s, its metadata's and its ``.dir``."""
    try:
        files = store.read_metadata(path)["files"]
        meta = store.md5_file(path / store.METADATA_NAME)
    except (CacheError, KeyError):
        return {path.name + ".dir"}
    return {entry["md5"] for entry in files.values()} | {meta, path.name + ".dir"}
