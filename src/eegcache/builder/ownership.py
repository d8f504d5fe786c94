"""What a build may do to its ``out_dir``: write into it alone, and touch nothing there it did not write.

- **Where.** ``out_dir`` is not ``raw_dir``, not inside it and does not contain it, and the hash state and
  metrics file are not inside ``out_dir`` (:func:`check_paths`, a ConfigError before anything is written).
- **One writer.** :func:`lock` takes an ``flock`` on ``.<name>.build.lock`` *beside* ``out_dir``, without
  waiting: a second build fails at once naming the holder (pid, host) rather than hanging a ``dvc repro``. The
  file is outside ``out_dir`` because DVC hashes every file in it into the version (and ``verify`` would call it
  an extra file); it is beside it rather than in ``build.state_dir`` because it belongs to the directory: two
  projects or configs (other state dirs) building into one ``out_dir`` must meet at the same lock. ``run_build``
  and ``merge_shards`` hold it exclusively; the shards of one sharded build share it (they write disjoint
  outputs), so a shard and a whole build or a merge exclude each other.
- **Ownership.** The build's own files are the outputs its metadata or journal lists (:class:`Journal` also
  records, before any output is written, every path the build may write: its *claims*, so a killed build's
  files stay its own), the metadata and journal, and temp files named exactly as ``store.atomic_write`` names
  them. Listed relative paths are data: each must pass :func:`inside` (the gate of :mod:`eegcache.trust`). Only those files are
  ever deleted (:func:`remove_stale`).
- **Anything else is refused, never deleted** (:func:`check_contents`): a non-empty ``out_dir`` that is not an
  eegcache cache, or a file of someone else's inside one (``verify`` would reject such a cache, and DVC would
  version the file with it). Files at the paths this build's plan writes are the exception: the build writes
  them anyway, and they are what an interrupted sharded build leaves.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from eegcache import locks, trust
from eegcache.config import Config
from eegcache.core import corpus, store
from eegcache.errors import CacheError, ConfigError, EegcacheError

log = logging.getLogger(__name__)

LOCK_SUFFIX = ".build.lock"
# store.atomic_write's temp names: tempfile.mkstemp(prefix=f".{name}{TMP_MARK}") adds 8 of [a-z0-9_]
_TEMP = re.compile(rf"\.(?P<target>.+){re.escape(store.TMP_MARK)}[a-z0-9_]{{8}}")
_OWN_NAMES = (store.METADATA_NAME, store.JOURNAL_NAME)
_CAUSES = {
    errno.ENOSPC: "no space left on the device (the disk is full)",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EFBIG: "file too large (a file-size limit, see `ulimit -f`, or the filesystem's)",
    errno.EROFS: "the filesystem is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}
_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)


def check_paths(config: Config, base_dir: Path) -> None:
    """Raise ConfigError when ``build.out_dir`` is ``data.raw_dir``, inside it or around it, is a filesystem root,
    or holds ``build.state_dir`` or ``build.metrics_file`` (paths relative to ``base_dir``; symlinks resolved)."""
    raw, out = (base_dir / config.data.raw_dir).resolve(), (base_dir / config.build.out_dir).resolve()
    said = f"build.out_dir = {config.build.out_dir}"
    if out == raw or out.is_relative_to(raw) or raw.is_relative_to(out):
        how = "is" if out == raw else "is inside" if out.is_relative_to(raw) else "contains"
        raise ConfigError(
            f"{said} {how} data.raw_dir = {config.data.raw_dir} ({raw}): the build must never write "
            "into the corpus nor take it for part of the cache; choose an out_dir outside the raw data"
        )
    if out.parent == out:
        raise ConfigError(f"{said} is a filesystem root; choose a directory of its own for the cache")
    for key, value in (("build.state_dir", config.build.state_dir), ("build.metrics_file", config.build.metrics_file)):
        if (base_dir / value).resolve().is_relative_to(out):
            raise ConfigError(
                f"{key} = {value} is inside {said}: DVC would version it with the cache and verify "
                "would reject the cache; put it outside out_dir"
            )


def lock_file(out_dir: Path) -> Path:
    """The lock of ``out_dir``: ``.<name>.build.lock`` beside the resolved directory."""
    out = out_dir.resolve()
    return out.with_name(f".{out.name}{LOCK_SUFFIX}")


@contextlib.contextmanager
def lock(out_dir: Path, shared: bool = False) -> Iterator[None]:
    """Hold ``out_dir``'s build lock (exclusive, or ``shared`` between the shards of one build) for the block;
    CacheError naming the holder (pid, host) when another build has it. On a filesystem without ``flock`` the
    build goes on unprotected, with a warning."""
    path = lock_file(out_dir)
    with contextlib.ExitStack() as stack:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            stack.enter_context(locks.held(path, shared))
        except locks.Busy as exc:
            raise CacheError(
                f"another eegcache build is writing into this out_dir: {exc.holders} holds {path}; "
                "wait for it to finish (or stop it) and rerun",
                out_dir,
            ) from None
        except OSError as exc:
            if exc.errno not in _NO_LOCKS:
                raise disk_error(path, exc, "create the build lock") from exc
            log.warning("%s: the filesystem does not support locks (%s); concurrent builds are not excluded", path, exc)
        yield


@contextlib.contextmanager
def owning(
    out_dir: Path, planned: set[str], shared: bool = False, first: Callable[[set[str]], None] | None = None
) -> Iterator[set[str]]:
    """The build's hold on ``out_dir`` for the block: its lock (exclusive, or ``shared`` between the shards of one
    build), then a refusal (:func:`check_contents`, nothing deleted) of anything there but the build's own files and
    files at the ``planned`` output paths -> the rel paths the build's own records list (:func:`owned`). ``first``:
    the caller's own check of those records, run before (a merge names every missing and foreign output at once)."""
    with lock(out_dir, shared):
        ours = owned(out_dir)
        if first is not None:
            first(ours)
        check_contents(out_dir, ours, planned)
        yield ours


def disk_error(path: Path, exc: OSError, doing: str = "write") -> CacheError:
    """An OSError while writing or removing ``path`` as one clear CacheError: the file, the cause, what to do."""
    cause = _CAUSES.get(exc.errno or 0, exc.strerror or str(exc))
    return CacheError(
        f"cannot {doing} this file: {cause}; the build stopped unfinished (a cache is complete only "
        "once its metadata is written): fix that and rerun, outputs already written are reused",
        path,
    )


@contextlib.contextmanager
def writing(path: Path, doing: str = "write") -> Iterator[None]:
    """Turn an OSError of the block (disk full, file-size limit, read-only) into :func:`disk_error` on ``path``."""
    try:
        yield
    except OSError as exc:
        raise disk_error(path, exc, doing) from exc


def inside(root: Path, rel: object) -> Path | None:
    """``root / rel`` when ``rel`` passes the gate for relative paths and, symlinks resolved, stays under ``root``
    (:func:`eegcache.trust.inside`); else None (the caller logs it and leaves it alone)."""
    try:
        return trust.inside(root, rel)  # type: ignore[arg-type]
    except trust.UnsafeName:
        return None


def own_temp(rel: str) -> bool:
    """``rel`` is a temp file ``store.atomic_write`` leaves when killed, of a file the build writes into
    ``out_dir``: the metadata or journal at the top, an output ``<split>/<name>.npz`` below."""
    parent, _, name = rel.rpartition("/")
    match = _TEMP.fullmatch(name)
    if match is None:
        return False
    target = match["target"]
    return target in _OWN_NAMES if not parent else parent in corpus.SPLITS and target.endswith(store.SUFFIX)


def owned(out_dir: Path) -> set[str]:
    """Rel paths of the outputs the build's own records in ``out_dir`` list: the metadata's files and the journal's
    entries and claims; a path that fails :func:`inside` is not ours (logged, never touched)."""
    rels: set[Any] = set(Journal.rels(out_dir))
    try:
        files = store.read_metadata(out_dir).get("files")
        rels |= set(files) if isinstance(files, dict) else set()
    except EegcacheError as exc:
        if (out_dir / store.METADATA_NAME).exists():
            log.warning("%s; the files it lists are not taken for the build's own", exc)
    bad = {rel for rel in rels if inside(out_dir, rel) is None}
    for rel in sorted(map(repr, bad)):
        log.warning("%s: the cache's records list %s, not a path inside it; ignored", out_dir, rel)
    return rels - bad


def _entries(out_dir: Path) -> Iterator[tuple[str, bool]]:
    """(rel path, is a symlink) of every file under ``out_dir`` and of every symlink (followed nowhere)."""
    for folder, dirs, files in os.walk(out_dir):
        for name in [*files, *(d for d in dirs if os.path.islink(os.path.join(folder, d)))]:
            path = Path(folder, name)
            yield path.relative_to(out_dir).as_posix(), path.is_symlink()


def check_contents(out_dir: Path, ours: set[str], planned: set[str]) -> None:
    """Raise CacheError, deleting nothing, when ``out_dir`` holds anything but the build's own files (``ours``,
    from :func:`owned`; the metadata, journal, :func:`own_temp` files) and files at the ``planned`` output paths.
    Any symlink is refused: the build never makes one, and one could lead its writes out of ``out_dir``."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise CacheError("build.out_dir is not a directory", out_dir)
    allowed = ours | planned | set(_OWN_NAMES)
    unknown = sorted(
        f"{rel} (a symlink)" if link else rel
        for rel, link in _entries(out_dir)
        if link or (rel not in allowed and not own_temp(rel))
    )
    if not unknown:
        return
    shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
    if not any((out_dir / name).exists() for name in _OWN_NAMES):
        raise CacheError(
            f"not an eegcache cache (no {store.METADATA_NAME} or {store.JOURNAL_NAME}) and not empty: "
            f"{shown}; the build writes only into an empty directory or a cache of its own: choose "
            "another build.out_dir or move these files away",
            out_dir,
        )
    raise CacheError(
        f"holds {len(unknown)} file(s) the build did not write: {shown}; move them out of out_dir "
        "(the build never deletes them, and DVC would version them with the cache, which verify "
        "then rejects)",
        out_dir,
    )


def remove_stale(out_dir: Path, ours: set[str], keep: set[str]) -> int:
    """Delete the build's own files it no longer needs: outputs in ``ours`` (:func:`owned`) but not in ``keep``,
    and :func:`own_temp` files (no live writer has any while the exclusive lock is held) -> how many."""
    temps = [rel for rel, link in _entries(out_dir) if not link and own_temp(rel)] if out_dir.is_dir() else []
    removed = 0
    for rel in sorted(ours - keep) + temps:
        path = inside(out_dir, rel)
        if path is None or path.is_symlink() or not path.is_file():
            continue
        log.info("removing stale cache file %s", path)
        with writing(path, "remove"):
            path.unlink()
        removed += 1
    return removed


class Journal:
    """Append-only record of the build in progress (one JSON object per line): first its *claims*, every output
    path it may write or still owns (so a killed build's files remain its own), then each finished output with its
    entry, so a killed build's rerun reuses it. ``with Journal(out_dir, entries, claims)`` starts it; the build
    deletes it once the metadata records every output."""

    def __init__(self, out_dir: Path, entries: dict[str, dict[str, Any]], claims: set[str] = frozenset()):
        self.path = out_dir / store.JOURNAL_NAME
        self._entries = entries
        self._claims = claims
        self._handle: Any = None

    @staticmethod
    def _records(out_dir: Path) -> Iterator[dict[str, Any]]:
        try:
            lines = (out_dir / store.JOURNAL_NAME).read_text().splitlines()
        except FileNotFoundError:
            return
        except (OSError, UnicodeDecodeError) as exc:
            raise CacheError(f"journal unreadable ({exc})", out_dir / store.JOURNAL_NAME) from exc
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a torn last line from a killed build: that output is simply redone
            if isinstance(record, dict) and isinstance(record.get("rel"), str):
                yield record

    @staticmethod
    def read(out_dir: Path) -> dict[str, dict[str, Any]]:
        """Finished outputs: rel path -> entry."""
        return {r["rel"]: r["entry"] for r in Journal._records(out_dir) if isinstance(r.get("entry"), dict)}

    @staticmethod
    def rels(out_dir: Path) -> set[str]:
        """Every rel path the journal names, claimed or finished."""
        return {r["rel"] for r in Journal._records(out_dir)}

    def __enter__(self) -> Journal:
        claims = "".join(json.dumps({"rel": rel}) + "\n" for rel in sorted(self._claims))
        body = claims + "".join(self._line(rel, e) for rel, e in sorted(self._entries.items()))
        with writing(self.path):
            store.atomic_write(self.path, body.encode())
            self._handle = open(self.path, "a")
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.close()

    def add(self, rel: str, entry: dict[str, Any]) -> None:
        with writing(self.path):
            self._handle.write(self._line(rel, entry))
            self._handle.flush()

    @staticmethod
    def _line(rel: str, entry: dict[str, Any]) -> str:
        return json.dumps({"rel": rel, "entry": entry}, sort_keys=True) + "\n"
