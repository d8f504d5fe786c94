"""Cache versions on a persistent volume: ``<volume>/cache/tusz/<hash>/``, one directory per version.

A version is installed from a fetch source through the volume's own DVC cache (``<versions>/.dvc/cache``, on the
same filesystem so files are hard-linked, not stored twice) and appears by one rename, complete. A version directory
is accepted only as the version asked for: its files match its metadata (names and sizes; content hashes under
``deep``) and the metadata's file list and own bytes hash to the version's DVC hash. A copy that fails is damaged:
it is moved aside to ``.quarantine/`` with a note of why, never deleted; corrupt objects it shared with the
volume's DVC cache are evicted so the next fetch brings them again. Which params a version was built with is not
judged here (see :mod:`eegcache.resolve`): a copy whose content hash is right is the version. Nothing else on the
volume is touched.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eegcache import fetch, locks, remote, trust, validate
from eegcache.core import store
from eegcache.errors import CacheError

log = logging.getLogger(__name__)

VERSIONS_DIR = Path("cache") / "tusz"
QUARANTINE = ".quarantine"
DVC_CACHE = Path(".dvc") / "cache"
PARTIAL = ".partial-"


def versions_root(volume_root: Path) -> Path:
    """The directory holding one directory per version (also the volume's DVC project)."""
    return Path(volume_root) / VERSIONS_DIR


def dirname(version: str) -> str:
    """A version's directory name on a volume: its hash without ``.dir``."""
    return version.removesuffix(".dir")


@dataclass(frozen=True)
class Check:
    path: Path
    problems: tuple[str, ...]
    damaged: tuple[str, ...] = ()  # files present with a wrong size or content
    files: int = 0
    bytes: int = 0
    params: dict[str, Any] | None = None  # the stage params the version's metadata records (when readable)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_version(path: Path, version: str, deep: bool = False) -> Check:
    """Is ``path`` a complete, intact copy of ``version`` (``<md5>.dir``)? ``deep`` also hashes every file."""
    meta_path = path / store.METADATA_NAME
    try:  # read once: the bytes hashed into the version are the ones verified
        metadata_bytes = meta_path.read_bytes()
        metadata = store.parse_metadata(metadata_bytes, meta_path)
    except FileNotFoundError:
        return Check(path, (f"{meta_path}: metadata missing",))
    except OSError as exc:
        return Check(path, (f"{meta_path}: metadata unreadable ({exc.strerror or exc})",))
    except CacheError as exc:
        return Check(path, (str(exc),))
    files = metadata.get("files")
    if not isinstance(files, dict) or not all(isinstance(e, dict) and "md5" in e for e in files.values()):
        return Check(path, (f"{meta_path}: malformed metadata (no file list with md5s)",))
    if (found := fetch.tree_hash(metadata_bytes, files)) != version:
        why = f"{meta_path}: its file list makes version {found}, not the expected {version}"
        return Check(path, (why,), damaged=(store.METADATA_NAME,))
    # deep: content hashes only; they equal the md5s that make up the version hash checked above
    verdict = validate.verify(path, deep=deep, threads=2 * (os.cpu_count() or 1), arrays=False, metadata=metadata)
    params = metadata.get("params") if isinstance(metadata.get("params"), dict) else None
    return Check(path, verdict.problems, verdict.damaged, verdict.files, verdict.bytes, params)


def recorded_params(path: Path, version: str) -> dict[str, Any] | None:
    """The stage params recorded in the metadata of the copy at ``path`` when its file list and bytes make
    ``version`` (so the metadata is that version's own; data files are not read); else None."""
    try:
        metadata_bytes = (path / store.METADATA_NAME).read_bytes()
        metadata = json.loads(metadata_bytes)
        if fetch.tree_hash(metadata_bytes, metadata["files"]) == version and isinstance(metadata.get("params"), dict):
            return metadata["params"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    return None


def peek_params(source: fetch.Source, version: str) -> dict[str, Any] | None:
    """The stage params in ``version``'s metadata read from ``source`` into memory (nothing is written): the listing
    checked against its name, the metadata against its id in the listing. None if the source lacks the version."""
    try:
        listing = fetch.parse_listing(fetch.read_object(source, version), version, source.name)
        metadata = json.loads(fetch.read_object(source, listing[store.METADATA_NAME]))
    except (fetch.MissingObject, KeyError):
        return None
    except (ValueError, OSError, trust.UnsafeName) as exc:
        raise CacheError(f"cannot read the metadata of {version} ({exc})", source.name) from exc
    return metadata.get("params") if isinstance(metadata, dict) else None


def install(source: fetch.Source, version: str, versions: Path, jobs: int = 16, size: int = 0, nfiles: int = 0) -> tuple[Path, fetch.FillStats]:
    """``<versions>/<dirname>/`` filled from ``source`` through the DVC cache at ``<versions>/.dvc/cache``.

    Safe to run from several processes at once on one volume: objects enter the cache by atomic renames, each
    process checks out into its own hidden directory, DVC's checkouts wait for each other, and the version
    directory appears by one rename, complete (a process that loses the race discards its copy). A killed run
    leaves only hidden partial directories, removed by the next run on the same host.
    """
    final = versions / dirname(version)
    if final.is_dir():
        return final, fetch.FillStats(0, 0, 0)
    _init_project(versions)
    _remove_dead_partials(versions)
    stats = fill_version(source, version, versions / DVC_CACHE, jobs)
    if final.is_dir():
        return final, stats
    partial = versions / f"{PARTIAL}{dirname(version)}.{socket.gethostname()}.{os.getpid()}"
    partial.mkdir()  # ours from the start: anything already at the name (a planted link) fails here
    remote.checkout(versions, version, partial, size=size, nfiles=nfiles)
    for path in partial.rglob("*"):
        if path.is_file() and not path.is_symlink():
            path.chmod(0o444)
    try:
        partial.rename(final)
    except OSError:
        if not final.is_dir():
            raise
        shutil.rmtree(partial)  # another process installed the same version first; ours is a spare copy
    return final, stats


def pull_version(root: Path, version: remote.Version, target: Path, jobs: int | None = None, mount: Path | None = None) -> Path:
    """``target/<dirname>/`` (read-only files) holding ``version``, fetched from the project's remote (settings and
    credentials passed in memory, never written under ``target``) or, with ``mount``, from a directory holding the
    remote's layout (a read-only bucket mount); every object's md5 is checked before it enters ``target``'s DVC
    cache. ``jobs``: concurrent transfers (default: the remote's ``jobs``, else 16)."""
    path = target / version.dirname
    if not path.is_dir():
        if mount is not None:
            source: fetch.Source = fetch.DirSource(mount)
        else:
            settings = remote.remote_settings(root)
            jobs = jobs or int(settings.get("jobs") or 16)
            source = remote.remote_source(settings, jobs)
        path = install(source, version.hash, target, jobs or 16, version.size, version.nfiles)[0]
    checked = verify_version(path, version.hash)
    if not checked.ok:  # announced only once checked; a damaged copy goes aside so a rerun fetches it again
        moved = quarantine(path, checked.problems, checked.damaged)
        raise CacheError(f"the pulled copy is damaged ({checked.problems[0]}); moved to {moved}: run again", path)
    return path


def tree_source(cache_dir: Path) -> tuple[str, fetch.TreeSource]:
    """A built cache directory as a fetch source, with its DVC version hash (from its metadata's md5s; the
    objects' content is verified again wherever they are fetched to)."""
    metadata_bytes = (cache_dir / store.METADATA_NAME).read_bytes()
    files = store.read_metadata(cache_dir)["files"]
    listing = fetch.tree_listing(metadata_bytes, files)
    paths = {entry["md5"]: rel for rel, entry in files.items()} | {store.md5_bytes(metadata_bytes): store.METADATA_NAME}
    oid = store.md5_bytes(listing) + ".dir"
    return oid, fetch.TreeSource(cache_dir, paths, {oid: listing})


def _cached_listing(source: fetch.Source, version: str, cache_dir: Path, where: str) -> dict[str, str]:
    """The version's listing from the DVC cache, checked; a damaged cached copy is evicted and fetched again once."""
    path = fetch.cache_path(cache_dir, version)
    try:
        return fetch.parse_listing(path.read_bytes(), version, where)
    except fetch.FetchError:
        log.warning("the cached listing of %s is damaged; fetching it again", version)
        path.unlink(missing_ok=True)
        fetch.fill(source, [version], cache_dir, jobs=1)
        return fetch.parse_listing(path.read_bytes(), version, where)


def fill_version(source: fetch.Source, version: str, cache_dir: Path, jobs: int = 16) -> fetch.FillStats:
    """Bring the version's ``.dir`` object, then every object it lists, into the DVC cache at ``cache_dir``."""
    from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, IncompleteReadError, ResponseStreamingError
    from urllib3.exceptions import HTTPError

    transient = (ConnectionError, IncompleteReadError, ResponseStreamingError, HTTPError)
    where = f"remote '{remote.REMOTE}' ({source.name})"
    try:
        # The .dir object first, alone and without retries: an unreachable server or a version never pushed
        # fails here, at once and clearly.
        try:
            fetch.fill(source, [version], cache_dir, jobs=1)
        except fetch.MissingObject as exc:
            raise remote.RemoteError(f"{where}: version {version} is not there (its .dir object is missing: was it pushed?)") from exc
        except (BotoCoreError, ClientError, HTTPError, OSError) as exc:
            raise remote.RemoteUnavailable(f"{where}: {remote.cause(exc)}") from exc
        listing = _cached_listing(source, version, cache_dir, where)
        stats = fetch.fill(source, listing.values(), cache_dir, jobs=jobs, transient=transient)
    except (fetch.FetchError, trust.UnsafeName) as exc:
        raise remote.RemoteError(f"{where}: {exc}") from exc
    except (BotoCoreError, ClientError, HTTPError, OSError) as exc:
        raise remote.RemoteError(f"{where}: {remote.cause(exc)}") from exc
    log.info("fetched %d objects (%d bytes), %d already in the cache", stats.fetched, stats.bytes, stats.present)
    return stats


def _init_project(versions: Path) -> None:
    """A git-less DVC project at ``versions`` whose site cache stays on its filesystem (written atomically, so
    processes starting together agree)."""
    dvc_dir = versions / ".dvc"
    if (versions / ".git").exists() or (versions / "dvc.yaml").exists():
        raise CacheError("a git or DVC project, not a volume: pull versions into a directory of their own", versions)
    text = (
        "[core]\n    no_scm = True\n"
        f"    site_cache_dir = {dvc_dir / 'site'}\n"
        "[cache]\n    type = \"reflink,hardlink,symlink,copy\"\n"
    )
    config = dvc_dir / "config"
    if not config.is_file() or config.read_text() != text:
        store.atomic_write(config, text.encode())


def _remove_dead_partials(versions: Path) -> None:
    """Partial checkouts left by killed processes of this host (their pid is gone)."""
    host = socket.gethostname()
    for path in versions.glob(f"{PARTIAL}*"):
        name, _, pid = path.name.removesuffix(".dvc").rpartition(".")
        if name.endswith(f".{host}") and pid.isdigit() and not locks.pid_alive(int(pid)):
            if path.is_symlink():
                log.warning("left alone: %s is a symbolic link, not a partial checkout of ours", path)
            elif path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)


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
    listing_path = fetch.cache_path(cache_dir, version) if damaged and fetch.is_object_id(version) else None
    if listing_path is None or not listing_path.is_file():
        return
    try:
        listing = fetch.parse_listing(listing_path.read_bytes(), version, listing_path)
    except (fetch.FetchError, trust.UnsafeName):
        listing_path.unlink()  # it would be linked again: the next fetch brings a good one
        return
    sizes = _sizes(fetch.cache_path(cache_dir, listing[store.METADATA_NAME])) if store.METADATA_NAME in listing else None
    for rel, oid in listing.items():
        obj = fetch.cache_path(cache_dir, oid)
        if not obj.is_file():
            continue
        hashed = rel in damaged or sizes is None
        if (hashed and store.md5_file(obj) != oid) or (not hashed and obj.stat().st_size != sizes.get(rel, -1)):
            obj.unlink()  # its content no longer matches its name: garbage that would be linked again


def _sizes(metadata_object: Path) -> dict[str, int] | None:
    """File sizes the version's metadata object records, None if that object is damaged (then it is evicted)."""
    try:
        data = metadata_object.read_bytes()
        if store.md5_bytes(data) == fetch.object_id(metadata_object.as_posix()):
            return {rel: entry["size"] for rel, entry in json.loads(data)["files"].items()} | {store.METADATA_NAME: len(data)}
        metadata_object.unlink()
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def installed(volume_root: Path) -> list[Path]:
    """Version directories installed on the volume (named by their hash, with their ``.dir`` object in the
    volume's DVC cache; a look-alike directory someone else made is not one), most recently used first."""
    root = versions_root(volume_root)
    if not root.is_dir():
        return []
    found = [
        p for p in root.iterdir()
        if fetch.is_object_id(p.name) and p.is_dir() and not p.is_symlink()
        and fetch.cache_path(root / DVC_CACHE, f"{p.name}.dir").is_file()
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
    in_use = {dirname(name) for name in in_use}
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
    """Object ids a version directory uses: its files' md5s, its metadata's and its ``.dir`` (ids that are not
    object ids, from a damaged or hostile metadata file, are left out: they name nothing of ours)."""
    try:
        files = store.read_metadata(path)["files"]
        ids = {entry.get("md5") for entry in files.values()} | {store.md5_file(path / store.METADATA_NAME)}
    except (CacheError, KeyError, TypeError, AttributeError, OSError):
        ids = set()
    return {oid for oid in ids if isinstance(oid, str) and fetch.is_object_id(oid)} | {path.name + ".dir"}
