"""DVC's content-addressed objects, described here only: object ids, the layout of a remote or cache
(``files/md5/<2>/<30>[.dir]``), and the ``.dir`` listing that makes a cache version's hash."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from eegcache import trust
from eegcache.core.store import METADATA_NAME
from eegcache.errors import EegcacheError


class ObjectError(EegcacheError):
    """An object (or listing) whose content does not match its name, or that is not what its name says."""


def is_object_id(text: str) -> bool:
    """``text`` names a DVC object: 32 lowercase hex digits, ``.dir`` for a directory listing."""
    try:
        return bool(trust.object_id(text))
    except trust.UnsafeName:
        return False


def object_key(oid: str) -> str:
    """An object's path under a DVC 3 remote or cache root (DVC's layout, described here only):
    ``files/md5/<first 2 hex digits>/<the other 30>[.dir]``. ``oid`` passes the object-id gate first."""
    oid = trust.object_id(oid)
    return f"files/md5/{oid[:2]}/{oid[2:]}"


def object_id(key: str) -> str | None:
    """The object id of a path in that layout (the inverse of :func:`object_key`); None for anything else there
    (a temporary upload, a stray file)."""
    parts = key.rsplit("/", 2)
    oid = "".join(parts[-2:])
    return oid if len(parts) == 3 and len(parts[-2]) == 2 and is_object_id(oid) else None


def tree_listing(metadata_bytes: bytes, files: dict[str, dict[str, Any]]) -> bytes:
    """The ``.dir`` object DVC writes for a cache whose metadata file holds ``metadata_bytes`` and lists ``files``
    (entries ``{"md5", "relpath"}`` sorted by path, keys sorted)."""
    entries = [{"md5": entry["md5"], "relpath": rel} for rel, entry in files.items()]
    entries.append({"md5": hashlib.md5(metadata_bytes, usedforsecurity=False).hexdigest(), "relpath": METADATA_NAME})
    return json.dumps(sorted(entries, key=lambda e: e["relpath"]), sort_keys=True).encode()


def tree_hash(metadata_bytes: bytes, files: dict[str, dict[str, Any]]) -> str:
    """The DVC directory hash (``<md5>.dir``) of such a cache: the md5 of its ``.dir`` object."""
    return hashlib.md5(tree_listing(metadata_bytes, files), usedforsecurity=False).hexdigest() + ".dir"


def parse_listing(data: bytes, version: str, where: object = None) -> dict[str, str]:
    """A ``.dir`` object's entries, ``{relpath: object id}``, each through the gate (:mod:`eegcache.trust`), after
    checking that ``data`` hashes to ``version``, its name. ObjectError if it does not or is not a listing."""
    found = hashlib.md5(data, usedforsecurity=False).hexdigest()
    if found != trust.version_id(version, where).removesuffix(".dir"):
        raise ObjectError(f"the listing of {version} has content hash {found}: corrupt or replaced", where)
    try:
        entries = trust.loads_json(data)
        listing = {trust.relpath(e["relpath"], where): trust.object_id(e["md5"], where) for e in entries}
    except (ValueError, TypeError, KeyError) as exc:
        raise ObjectError(f"the listing of {version} is not a DVC directory listing ({exc})", where) from exc
    if len(listing) != len(entries) or any(oid.endswith(".dir") for oid in listing.values()):
        raise ObjectError(f"the listing of {version} names a path twice or a nested listing", where)
    return listing


def cache_path(cache_dir: Path, oid: str) -> Path:
    """Where object ``oid`` lives in the DVC cache at ``cache_dir``: through the gate, so a symlinked prefix folder
    planted in the cache cannot lead reads, writes or deletions elsewhere."""
    return trust.inside(cache_dir, object_key(oid), where=cache_dir)


def dirname(version: str) -> str:
    """A version's directory name on a volume: its hash without ``.dir``."""
    return version.removesuffix(".dir")
