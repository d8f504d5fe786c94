"""Digests that identify what a cache was made of: equal content gives equal digests on every machine."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, NamedTuple

from eegcache.core.store import md5_file


class Stamp(NamedTuple):
    """An input file's md5 with the size and modification time it had when it was read."""

    size: int  # bytes
    mtime_ns: int
    md5: str


def stamped_md5(path: Path) -> Stamp:
    """The file's md5, the stat taken before reading so a concurrent change is never hidden."""
    stat = path.stat()
    return Stamp(stat.st_size, stat.st_mtime_ns, md5_file(path))


def stable_hash(obj: Any) -> str:
    """SHA-256 of the canonical JSON of plain data: equal params give equal hashes on every machine."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
