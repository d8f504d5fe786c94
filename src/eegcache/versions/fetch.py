"""Sources of a version's objects (an S3 remote, a directory in the remote's layout such as a read-only bucket
mount, a built cache directory) and the verified fill of a DVC cache from them.

Fill a DVC cache with content-addressed objects at high concurrency, verifying every object's md5 on the
bytes as they arrive (no second read), from an S3 remote or from a directory holding the remote's layout
(a read-only bucket mount). DVC then only checks out from its full cache.

DVC's own fetch downloads at modest concurrency and re-reads every object to hash it afterwards on one
thread; this does both in one pass per object, on a thread pool (hashlib and socket reads release the GIL).
An object enters the cache only by an atomic rename after its hash matched, so an interrupted fill leaves
temporary files at worst, never a wrong object; a rerun fetches only what is absent.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from eegcache import trust
from eegcache.core import store
from eegcache.errors import CacheError, cause
from eegcache.versions.objects import (
    ObjectError,
    cache_path,
    object_key,
    parse_listing,
    tree_listing,
)

log = logging.getLogger(__name__)

CHUNK = 1 << 20  # bytes read per call from a file or an S3 body
LISTING_LIMIT = 1 << 28  # bytes; TUSZ's listing is ~0.6 MB
ATTEMPTS = 4  # per object, for transfers cut mid-stream (botocore retries only the request itself)


class FetchError(ObjectError):
    """An object that could not be fetched or whose content does not match its name."""


class MissingObject(FetchError):
    """The source does not hold the object."""


class SourceUnavailable(FetchError):
    """The source cannot be reached or refuses us (server down, bad or missing credentials, no bucket)."""


class Source(Protocol):
    """Where objects come from: ``chunks(oid)`` yields an object's bytes, raising MissingObject if absent."""

    name: str

    def chunks(self, oid: str) -> AbstractContextManager[Iterator[bytes]]: ...


@dataclass
class DirSource:
    """A directory with the remote's layout (``<root>/files/md5/..``), e.g. a read-only mounted bucket prefix."""

    root: Path

    @property
    def name(self) -> str:
        return str(self.root)

    def chunks(self, oid: str) -> AbstractContextManager[Iterator[bytes]]:
        return _file_chunks(self.root / object_key(oid))


class _file_chunks(AbstractContextManager):
    def __init__(self, path: Path) -> None:
        try:
            self.handle: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed in __exit__
        except FileNotFoundError as exc:
            raise MissingObject("not in the source", path) from exc

    def __enter__(self) -> Iterator[bytes]:
        return iter(lambda: self.handle.read(CHUNK), b"")

    def __exit__(self, *exc: object) -> None:
        self.handle.close()


@dataclass
class TreeSource:
    """A cache directory as a source: its files by their md5s, plus objects given as bytes (its ``.dir``)."""

    root: Path
    paths: dict[str, str]  # oid -> path relative to root
    blobs: dict[str, bytes]  # oid -> content

    @property
    def name(self) -> str:
        return str(self.root)

    def chunks(self, oid: str) -> AbstractContextManager[Iterator[bytes]]:
        if oid in self.blobs:
            return nullcontext(iter([self.blobs[oid]]))
        if oid not in self.paths:
            raise MissingObject(f"object {oid} is not in the tree", self.root)
        return _file_chunks(self.root / self.paths[oid])


class S3Source:
    """An S3 prefix (``s3://bucket/prefix``) reached with botocore, configured from DVC remote settings
    (``endpointurl``, ``region``, ``profile``, ``access_key_id``, ``secret_access_key``, ``session_token``,
    ``ssl_verify``); unset credentials fall back to botocore's usual chain (environment, files, instance role)."""

    def __init__(self, settings: dict[str, Any], connections: int, name: str | None = None) -> None:
        import botocore.session
        from botocore.config import Config

        self.name = name or settings["url"]
        self.bucket, _, prefix = settings["url"].removeprefix("s3://").partition("/")
        self.prefix = prefix.strip("/")
        if settings.get("credentialpath"):
            os.environ.setdefault("AWS_SHARED_CREDENTIALS_FILE", settings["credentialpath"])
        session = botocore.session.Session(profile=settings.get("profile"))
        self.client = session.create_client(
            "s3",
            endpoint_url=settings.get("endpointurl"),
            region_name=settings.get("region") or session.get_config_variable("region") or "us-east-1",
            aws_access_key_id=settings.get("access_key_id"),
            aws_secret_access_key=settings.get("secret_access_key"),
            aws_session_token=settings.get("session_token"),
            verify=settings.get("ssl_verify"),
            config=Config(
                max_pool_connections=connections,
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=10,
                read_timeout=60,
            ),
        )

    def chunks(self, oid: str) -> AbstractContextManager[Iterator[bytes]]:
        from botocore.exceptions import ClientError

        key = f"{self.prefix}/{object_key(oid)}" if self.prefix else object_key(oid)
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise MissingObject(f"not on the remote (s3://{self.bucket}/{key})") from exc
            raise
        return _body_chunks(body)


class _body_chunks(AbstractContextManager):
    def __init__(self, body: Any) -> None:
        self.body = body

    def __enter__(self) -> Iterator[bytes]:
        return self.body.iter_chunks(CHUNK)

    def __exit__(self, *exc: object) -> None:
        self.body.close()


@dataclass(frozen=True)
class FillStats:
    fetched: int  # objects downloaded
    present: int  # objects already in the cache
    bytes: int  # bytes downloaded


def read_object(source: Source, oid: str, limit: int = LISTING_LIMIT) -> bytes:
    """One object's bytes in memory (up to ``limit`` bytes), checked against its name; FetchError if they differ."""
    digest, parts, size = hashlib.md5(usedforsecurity=False), [], 0
    with source.chunks(trust.object_id(oid)) as chunks:
        for chunk in chunks:
            digest.update(chunk)
            parts.append(chunk)
            size += len(chunk)
            if size > limit:
                raise FetchError(f"object {oid} from {source.name} is larger than {limit} bytes")
    if digest.hexdigest() != oid.removesuffix(".dir"):
        raise FetchError(f"object {oid} from {source.name} has content hash {digest.hexdigest()}: corrupt, not used")
    return b"".join(parts)


def fill(
    source: Source,
    oids: Iterable[str],
    cache_dir: Path,
    jobs: int = 16,
    transient: tuple[type[BaseException], ...] = (),
) -> FillStats:
    """Bring every object of ``oids`` into the DVC cache at ``cache_dir`` (read-only files), verified.

    ``transient``: exception types worth retrying for one object (a connection cut mid-stream); anything
    else, and a transient error that persists, propagates. Objects already in the cache are trusted: only a
    verified object is ever renamed into place here, and deep validation of the cache belongs to the resolver.
    """
    wanted = list(dict.fromkeys(oids))
    todo = [oid for oid in wanted if not cache_path(cache_dir, oid).exists()]
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        sizes = list(pool.map(lambda oid: _retrying(lambda: _fetch_one(source, oid, cache_dir), transient), todo))
    return FillStats(len(todo), len(wanted) - len(todo), sum(sizes))


def _retrying(fn: Callable[[], int], transient: tuple[type[BaseException], ...]) -> int:
    for attempt in range(ATTEMPTS):
        try:
            return fn()
        except transient:
            if attempt == ATTEMPTS - 1:
                raise
            time.sleep(0.5 * 2**attempt)
    raise AssertionError("unreachable")


def _fetch_one(source: Source, oid: str, cache_dir: Path) -> int:
    """One object into the cache: every chunk written in full (a short write is retried; a full disk or a file-size
    limit is a FetchError), its md5 checked, its size on disk checked against the bytes received after fsync, and
    only then renamed into place."""
    dest = cache_path(cache_dir, oid)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{socket.gethostname()}.{os.getpid()}.{id(dest)}.tmp")  # see remove_partials
    digest = hashlib.md5(usedforsecurity=False)
    size = 0
    try:
        with source.chunks(oid) as chunks, open(tmp, "wb", buffering=0) as out:
            for chunk in chunks:
                digest.update(chunk)
                _write_all(out, chunk)
                size += len(chunk)
                if oid.endswith(".dir") and size > LISTING_LIMIT:  # a hostile source could stream forever
                    raise FetchError(f"the listing {oid} from {source.name} is over {LISTING_LIMIT} bytes: refused")
            os.fsync(out.fileno())
            on_disk = os.fstat(out.fileno()).st_size
        if digest.hexdigest() != oid.removesuffix(".dir"):
            raise FetchError(
                f"object {oid} from {source.name} has content hash {digest.hexdigest()}: corrupt, not used"
            )
        if on_disk != size:
            raise FetchError(f"object {oid}: {on_disk} of {size} bytes reached the disk", tmp.parent)
        os.chmod(tmp, 0o444)
        os.replace(tmp, dest)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS):
            raise FetchError(
                f"cannot store object {oid}: {os.strerror(exc.errno)} (free space or raise the limit, "
                "then run again: what was fetched is kept)",
                dest.parent,
            ) from exc
        raise
    finally:
        tmp.unlink(missing_ok=True)
    return size


def remove_partials(cache_dir: Path) -> int:
    """Remove the partial objects (``.<object>.<host>.<pid>.<n>.tmp``) that fetches of this host left when they
    were killed (their pid is gone) -> how many. Another host's, a live process's and anything else stay."""
    from eegcache.locks import pid_alive

    host, removed = socket.gethostname(), 0
    root = cache_dir / "files" / "md5"
    for sub in os.scandir(root) if root.is_dir() else ():
        if not sub.is_dir(follow_symlinks=False):
            continue
        for entry in os.scandir(sub.path):
            stem, _, pid_n = entry.name.removesuffix(".tmp").rpartition(f".{host}.")
            pid, _, n = pid_n.partition(".")
            if (entry.name.startswith(".") and entry.name.endswith(".tmp") and stem and pid.isdigit() and n.isdigit()
                    and entry.is_file(follow_symlinks=False) and not pid_alive(int(pid))):  # fmt: skip
                os.unlink(entry.path)
                removed += 1
    return removed


def _write_all(out: Any, chunk: bytes) -> None:
    """Write all of ``chunk`` to an unbuffered file: a raw write may take only part of it (e.g. at a file-size
    limit), and the rest is retried until the OS raises why it cannot take more."""
    view = memoryview(chunk)
    while view:
        written = out.write(view)
        if not written:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[written:]


def peek_params(source: Source, version: str) -> dict[str, Any] | None:
    """The stage params in ``version``'s metadata read from ``source`` into memory (nothing is written): the listing
    checked against its name, the metadata against its id in the listing. None if the source lacks the version."""
    try:
        listing = parse_listing(read_object(source, version), version, source.name)
        metadata = trust.loads_json(read_object(source, listing[store.METADATA_NAME]))
    except (MissingObject, KeyError):
        return None
    except (ValueError, OSError, trust.UnsafeName) as exc:
        raise CacheError(f"cannot read the metadata of {version} ({exc})", source.name) from exc
    return metadata.get("params") if isinstance(metadata, dict) else None


def tree_source(cache_dir: Path) -> tuple[str, TreeSource]:
    """A built cache directory as a fetch source, with its DVC version hash (from its metadata's md5s; the
    objects' content is verified again wherever they are fetched to)."""
    metadata_bytes = (cache_dir / store.METADATA_NAME).read_bytes()
    files = store.read_metadata(cache_dir)["files"]
    listing = tree_listing(metadata_bytes, files)
    paths = {entry["md5"]: rel for rel, entry in files.items()} | {store.md5_bytes(metadata_bytes): store.METADATA_NAME}
    oid = store.md5_bytes(listing) + ".dir"
    return oid, TreeSource(cache_dir, paths, {oid: listing})


def _cached_listing(source: Source, version: str, cache_dir: Path) -> dict[str, str]:
    """The version's listing from the DVC cache, checked; a damaged cached copy is evicted and fetched again once."""
    path = cache_path(cache_dir, version)
    try:
        return parse_listing(path.read_bytes(), version, source.name)
    except FetchError:
        log.warning("the cached listing of %s is damaged; fetching it again", version)
        path.unlink(missing_ok=True)
        fill(source, [version], cache_dir, jobs=1)
        return parse_listing(path.read_bytes(), version, source.name)


def fill_version(source: Source, version: str, cache_dir: Path, jobs: int = 16) -> FillStats:
    """Bring the version's ``.dir`` object, then every object it lists, into the DVC cache at ``cache_dir``.
    SourceUnavailable when the source cannot be reached; FetchError naming the source for anything else."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectionError,
        IncompleteReadError,
        ResponseStreamingError,
    )
    from urllib3.exceptions import HTTPError

    if removed := remove_partials(cache_dir):
        log.info("removed %d partial objects of killed fetches from %s", removed, cache_dir)
    transient = (ConnectionError, IncompleteReadError, ResponseStreamingError, HTTPError)
    unreachable = (BotoCoreError, ClientError, HTTPError, OSError)
    # The .dir object first, alone and without retries: an unreachable server or a version never pushed
    # fails here, at once and clearly.
    try:
        fill(source, [version], cache_dir, jobs=1)
    except MissingObject as exc:
        raise FetchError(
            f"{source.name}: version {version} is not there (its .dir object is missing: was it pushed?)"
        ) from exc
    except (FetchError, trust.UnsafeName) as exc:
        raise FetchError(_named(source, exc)) from exc
    except unreachable as exc:
        raise SourceUnavailable(f"{source.name}: {cause(exc)}") from exc
    try:
        listing = _cached_listing(source, version, cache_dir)
        stats = fill(source, listing.values(), cache_dir, jobs=jobs, transient=transient)
    except (FetchError, trust.UnsafeName) as exc:
        raise FetchError(_named(source, exc)) from exc
    except unreachable as exc:
        raise FetchError(f"{source.name}: {cause(exc)}") from exc
    log.info("fetched %d objects (%d bytes), %d already in the cache", stats.fetched, stats.bytes, stats.present)
    return stats


def _named(source: Source, exc: Exception) -> str:
    """``exc``'s message with the source it came from, said once."""
    return str(exc) if source.name in str(exc) else f"{source.name}: {exc}"
