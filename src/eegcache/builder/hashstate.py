"""Content digests of raw input files, remembered by (size, mtime) so unchanged inputs are not re-read.

Like DVC's own state database: the md5 of a file is recomputed only when its size or modification
time changed. The state lives outside the cache (``build.state_dir``), since it is machine-specific.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from eegcache import trust
from eegcache.core.identity import Stamp
from eegcache.core.store import atomic_write, dump_json, md5_file

log = logging.getLogger(__name__)
STATE_NAME = "input_hashes.json"


class HashState:
    def __init__(self, state_dir: Path):
        self.path = state_dir / STATE_NAME
        try:
            self._known: dict[str, list] = trust.loads_json(self.path.read_text())
        except FileNotFoundError:
            self._known = {}
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable hash state %s (%s); inputs will be re-hashed", self.path, exc)
            self._known = {}

    def _lookup(self, path: Path) -> tuple[str, list]:
        stat = path.stat()
        key = str(path.resolve())
        entry = self._known.get(key)
        if entry and entry[0] == stat.st_size and entry[1] == stat.st_mtime_ns:
            return key, entry
        return key, [stat.st_size, stat.st_mtime_ns, None]

    def cached(self, path: Path) -> str | None:
        """The remembered md5 of ``path`` if the file is unchanged since, else None (nothing is read)."""
        return self._lookup(path)[1][2]

    def record(self, path: Path, stamp: Stamp) -> None:
        """Remember a digest computed elsewhere (``eegcache.core.identity.stamped_md5`` in a build's worker)."""
        self._known[str(path.resolve())] = list(stamp)

    def md5_many(self, paths: list[Path], threads: int = 4) -> dict[Path, str | None]:
        """md5 hex digests of ``paths`` (hashing only new or changed files, in parallel threads); None for a file
        that cannot be read (gone, a broken link, no permission): the caller decides what that means."""
        looked: dict[Path, tuple[str | None, list]] = {}
        for path in paths:
            try:
                looked[path] = self._lookup(path)
            except OSError:
                looked[path] = (None, [None, None, None])
        todo = [path for path, (key, entry) in looked.items() if key is not None and entry[2] is None]
        with ThreadPoolExecutor(max_workers=threads) as pool:  # hashlib releases the GIL
            for path, digest in zip(todo, pool.map(_md5_or_none, todo)):
                looked[path][1][2] = digest
        for key, entry in looked.values():
            if key is not None and entry[2] is not None:
                self._known[key] = entry
        return {path: entry[2] for path, (_, entry) in looked.items()}

    def save(self) -> None:
        try:
            atomic_write(self.path, dump_json(self._known))
        except OSError as exc:  # a read-only checkout still builds; it just re-hashes next time
            log.warning("could not save hash state %s (%s)", self.path, exc)


def _md5_or_none(path: Path) -> str | None:
    try:
        return md5_file(path)
    except OSError:
        return None
