"""The DVC and git adapter, and the only module that runs either: the S3 remote's configuration, push, pull,
remote verification, versions named by revisions, ``dvc repro`` and DVC's checkout of a fetched version.

A cache *version* is the DVC hash (``<md5>.dir``) of the ``build_cache`` stage's directory output in ``dvc.lock`` at
a git revision; its objects live on the remote in DVC's layout (:func:`eegcache.fetch.object_key`) and the ``.dir``
object lists them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from eegcache import fetch
from eegcache.config import flatten
from eegcache.core import store
from eegcache.errors import EegcacheError

log = logging.getLogger(__name__)

REMOTE = "storage"
STAGE = "build_cache"


class RemoteError(EegcacheError):
    """A remote that cannot be used (credentials, server, bucket, missing objects), naming the remote and the cause."""


class RemoteUnavailable(RemoteError):
    """The remote cannot be reached or refuses us (server down, bad or missing credentials, no bucket)."""


@dataclass(frozen=True)
class Version:
    """One cache version as ``dvc.lock`` records it at a revision."""

    rev: str  # the revision asked for ("workspace" for the working tree)
    hash: str  # "<md5>.dir"
    nfiles: int
    size: int
    params: dict[str, Any] = field(default_factory=dict)  # the stage params dvc.lock records (flat keys)

    @property
    def split_policy(self) -> str | None:
        return self.params.get("data.split_policy")

    @property
    def dirname(self) -> str:
        """The version's directory name on a volume: the hash without ``.dir``."""
        return self.hash.removesuffix(".dir")


@dataclass(frozen=True)
class RemoteVerdict:
    version: Version
    remote: str
    objects: int
    deep: bool
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def _git(root: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RemoteError(f"git {' '.join(args)}: {proc.stderr.strip()}", root)
    return proc.stdout


def version_at(root: Path, rev: str | None = None) -> Version:
    """The cache version that ``dvc.lock`` names at ``rev`` (None: the working tree), with the params DVC recorded."""
    text = (root / "dvc.lock").read_text() if rev is None else _git(root, "show", f"{rev}:dvc.lock")
    lock = yaml.safe_load(text) or {}
    stage = lock.get("stages", {}).get(STAGE, {})
    for out in stage.get("outs", []):
        if str(out.get("md5", "")).endswith(".dir"):  # the cache directory (the metrics file is not one)
            params = flatten(stage.get("params", {}).get("params.yaml", {}))
            return Version(rev or "workspace", out["md5"], int(out.get("nfiles", 0)), int(out.get("size", 0)), params)
    raise RemoteError(f"no directory output of stage {STAGE} in dvc.lock at {rev or 'the working tree'}", root)


def repro(root: Path) -> Version:
    """``dvc repro`` of the cache stage in the project at ``root`` (with this interpreter's ``eegcache`` on PATH)
    -> the version it recorded."""
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run(["dvc", "repro", STAGE], cwd=root, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise EegcacheError(f"dvc repro failed: {(proc.stderr or proc.stdout).strip()[-2000:]}", root)
    return version_at(root)


@contextmanager
def _repo(root: Path, config: dict[str, Any] | None = None, wait_for_lock: bool = False) -> Iterator[Any]:
    """A DVC repo (with in-memory ``config`` merged, if given) whose failures come out as RemoteError naming
    the remote and the cause."""
    from botocore.exceptions import BotoCoreError, ClientError
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    url = (config or {}).get("remote", {}).get(REMOTE, {}).get("url") or _url(root)
    if not (root / ".git").exists():  # a copy of the project without git (a container): DVC must not look for it
        config = {**(config or {}), "core": {**(config or {}).get("core", {}), "no_scm": True}}
    try:
        with Repo(str(root), config=config, _wait_for_lock=wait_for_lock) as repo:
            yield repo
    except DvcException as exc:
        raise RemoteError(f"remote '{REMOTE}' ({url}): {_cause(exc)}", root) from exc
    except (OSError, ValueError, BotoCoreError, ClientError) as exc:  # s3fs/botocore errors DVC did not wrap
        raise RemoteError(f"remote '{REMOTE}' ({url}): {_cause(exc)}", root) from exc


def _cause(exc: BaseException) -> str:
    """The innermost useful message of a chained exception (DVC wraps botocore/s3fs errors)."""
    messages = []
    while exc is not None:
        text = str(exc).strip()
        if text and text not in messages:
            messages.append(text)
        exc = exc.__cause__ or exc.__context__
    return " <- ".join(messages[:3]) or "unknown error"


def _url(root: Path) -> str:
    try:
        from dvc.config import Config

        return Config(str(root / ".dvc"))["remote"][REMOTE]["url"]
    except Exception:  # noqa: BLE001 - only used to decorate an error message
        return "?"


def configure(
    root: Path,
    url: str,
    *,
    endpoint_url: str | None = None,
    access_key: str | None = None,
    secret_key: str | None = None,
    jobs: int | None = None,
) -> None:
    """Make ``storage`` (``url`` = s3://bucket/prefix) the default remote in the tracked ``.dvc/config``, with
    ``verify = true``; endpoint and credentials go only to the git-ignored ``.dvc/config.local``."""
    from dvc.config import Config

    config = Config(str(root / ".dvc"))
    with config.edit("repo") as conf:
        conf["core"]["remote"] = REMOTE
        remote = conf["remote"].setdefault(REMOTE, {})
        remote.update({"url": url, "verify": True})
        if jobs:
            remote["jobs"] = jobs
    configure_access(root, endpoint_url=endpoint_url, access_key=access_key, secret_key=secret_key)


def configure_access(
    root: Path, *, endpoint_url: str | None = None, access_key: str | None = None, secret_key: str | None = None
) -> None:
    """Write the remote's endpoint and credentials to the git-ignored ``.dvc/config.local`` (only the given ones).

    The file holds the secret, so only its owner may read it from its first byte: it is created empty with mode
    0600 before DVC writes into it (DVC rewrites it in place, keeping the mode), and one that exists with a wider
    mode is tightened first, with a warning.
    """
    from dvc.config import Config

    local = {"endpointurl": endpoint_url, "access_key_id": access_key, "secret_access_key": secret_key}
    if any(local.values()):
        _owner_only(root / ".dvc" / "config.local")
        with Config(str(root / ".dvc")).edit("local") as conf:
            conf["remote"].setdefault(REMOTE, {}).update({k: v for k, v in local.items() if v})


def _owner_only(path: Path) -> None:
    """Create ``path`` empty with mode 0600 if it is missing (content kept if not); tighten a wider mode to 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        if mode & 0o077:
            os.fchmod(fd, 0o600)
            log.warning("%s was open to other users (mode %03o); made it 0600 before writing the keys", path, mode)
    finally:
        os.close(fd)


def _stage(root: Path) -> str:
    """The stage as a target DVC resolves from any working directory (bare names resolve against the cwd)."""
    return f"{root.resolve() / 'dvc.yaml'}:{STAGE}"


def push(root: Path, jobs: int | None = None) -> int:
    """Upload the workspace's cache version (all of it, metadata included); returns the objects uploaded.

    DVC decides what to send from its own index of the remote; objects deleted from the bucket behind its
    back would stay missing, so the remote is listed afterwards and any object still absent is sent too.
    """
    version = version_at(root)
    with _repo(root) as repo:
        count = int(repo.push(targets=[_stage(root)], jobs=jobs, remote=REMOTE))
        odb = repo.cloud.get_remote_odb(REMOTE, "push")
        local = repo.cache.local
        listing = json.loads(Path(local.oid_to_path(version.hash)).read_bytes())
        present = _present(odb)
        missing = [e["md5"] for e in listing if e["md5"] not in present]
        missing += [version.hash] if version.hash not in present else []  # the .dir last: it vouches for the rest
        for oid in missing:
            log.info("re-sending %s, absent on the remote although DVC's index lists it", oid)
            odb.fs.put_file(local.oid_to_path(oid), odb.oid_to_path(oid))
    return count + len(missing)


def push_tree(root: Path, version: str, source: fetch.TreeSource) -> int:
    """Upload a cache directory built outside DVC's workspace (e.g. by sharded containers; ``version`` and
    ``source`` from :func:`eegcache.volume.tree_source`) to the project's remote without copying it into a DVC
    cache: the objects the remote lacks, then the ``.dir`` object last. Returns the objects uploaded."""
    with _repo(root) as repo:
        odb = repo.cloud.get_remote_odb(REMOTE, "push")
        present = _present(odb)
        missing = [oid for oid in source.paths if oid not in present]
        for oid in missing:
            odb.fs.put_file(str(source.root / source.paths[oid]), odb.oid_to_path(oid))
        if version not in present:
            odb.fs.pipe_file(odb.oid_to_path(version), source.blobs[version])
    return len(missing) + (version not in present)


def _present(odb: Any) -> dict[str, int]:
    """Every object on the remote -> its size in bytes (one listing of ``files/md5/``)."""
    return {fetch.object_id(path): info["size"] for path, info in odb.fs.fs.find(odb.path, detail=True).items()}


def pull(root: Path, jobs: int | None = None) -> None:
    """Fetch and check out the cache version ``dvc.lock`` names in the working tree."""
    with _repo(root) as repo:
        repo.pull(targets=[_stage(root)], jobs=jobs, remote=REMOTE)


def _read_object(odb: Any, oid: str) -> bytes:
    with odb.fs.open(odb.oid_to_path(oid), mode="rb") as handle:
        return handle.read()


def _md5_object(odb: Any, oid: str) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with odb.fs.open(odb.oid_to_path(oid), mode="rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def verify_remote(root: Path, rev: str | None = None, deep: bool = False, jobs: int = 16,
                  version: Version | None = None) -> RemoteVerdict:  # fmt: skip
    """Check that every object of the version at ``rev`` (or ``version``) is on the remote with the size the
    version's metadata records (listing the remote, not trusting the ``.dir`` object alone); ``deep`` downloads
    and re-hashes each."""
    version = version or version_at(root, rev)
    with _repo(root) as repo:
        odb = repo.cloud.get_remote_odb(REMOTE, "remote-verify")
        url = repo.config["remote"][REMOTE]["url"]
        try:
            listing = json.loads(_read_object(odb, version.hash))
        except FileNotFoundError:
            return RemoteVerdict(version, url, 0, deep, (f"{version.hash}: the .dir object is missing on the remote",))
        objects = {entry["relpath"]: entry["md5"] for entry in listing}
        present = _present(odb)
        problems = [f"{rel} ({oid}): missing on the remote" for rel, oid in sorted(objects.items()) if oid not in present]
        sizes = _metadata_sizes(odb, objects, present)
        problems += [
            f"{rel} ({objects[rel]}): {present[objects[rel]]} bytes on the remote, metadata says {size}"
            for rel, size in sorted(sizes.items())
            if objects.get(rel) in present and present[objects[rel]] != size
        ]
        problems += [f"{rel}: listed in the metadata but not in {version.hash}" for rel in sorted(sizes.keys() - objects.keys())]
        if deep and not problems:
            with ThreadPoolExecutor(max_workers=jobs) as pool:
                digests = dict(zip(objects, pool.map(lambda oid: _md5_object(odb, oid), objects.values())))
            problems += [f"{rel} ({objects[rel]}): content hash on the remote is {digests[rel]}" for rel in sorted(objects) if digests[rel] != objects[rel]]
    return RemoteVerdict(version, url, len(objects) + 1, deep, tuple(problems))


def _metadata_sizes(odb: Any, objects: dict[str, str], present: dict[str, int]) -> dict[str, int]:
    """Expected size of each file per the version's own metadata (which the remote must hold too)."""
    oid = objects.get(store.METADATA_NAME)
    if oid is None or oid not in present:
        return {}
    metadata = json.loads(_read_object(odb, oid))
    return {rel: entry["size"] for rel, entry in metadata.get("files", {}).items()}


def versions(root: Path) -> list[tuple[Version, list[str]]]:
    """Cache versions named by tags and by commits that changed ``dvc.lock``: (version, revisions), newest first."""
    tags = _git(root, "tag", "--list", "--sort=-creatordate").split()
    commits = _git(root, "log", "--format=%h", "--", "dvc.lock").split()
    found: dict[str, tuple[Version, list[str]]] = {}
    for rev in tags + commits:
        try:
            version = version_at(root, rev)
        except RemoteError:
            continue  # a revision whose dvc.lock has no cache stage yet
        found.setdefault(version.hash, (version, []))[1].append(rev)
    return list(found.values())


def remote_settings(root: Path) -> dict[str, Any]:
    """The remote's full settings as the project resolves them (tracked config, config.local, environment)."""
    with _repo(root) as repo:
        try:
            return dict(repo.config["remote"][REMOTE])
        except KeyError as exc:
            raise RemoteError(f"no remote '{REMOTE}' configured (see README: remote set-up)", root / ".dvc") from exc


def checkout(project: Path, version: str, out: Path, size: int = 0, nfiles: int = 0) -> None:
    """DVC's checkout of ``version`` (every object already in ``project``'s DVC cache) into ``out``, a directory
    of the git-less DVC project ``project`` that nobody else writes; DVC's checkouts wait for each other."""
    pointer = out.with_name(f"{out.name}.dvc")
    entry = {"md5": version, "size": size, "nfiles": nfiles, "hash": "md5", "path": out.name}
    pointer.write_text(yaml.safe_dump({"outs": [{k: v for k, v in entry.items() if v}]}))
    try:
        with _repo(project, wait_for_lock=True) as repo:
            repo.checkout(targets=[str(pointer)], force=True)
    finally:
        pointer.unlink(missing_ok=True)


def remote_source(settings: dict[str, Any], jobs: int) -> fetch.S3Source:
    """The remote (its settings from :func:`remote_settings`) as a fetch source with ``jobs`` connections."""
    try:
        return fetch.S3Source(settings, connections=jobs)
    except Exception as exc:  # noqa: BLE001 - botocore's configuration errors, named with the remote
        raise RemoteUnavailable(f"remote '{REMOTE}' ({settings.get('url')}): {_cause(exc)}") from exc


def fill_version(source: fetch.Source, version: str, cache_dir: Path, jobs: int = 16) -> fetch.FillStats:
    """Bring the version's ``.dir`` object, then every object it lists, into the DVC cache at ``cache_dir``."""
    from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, IncompleteReadError, ResponseStreamingError
    from urllib3.exceptions import HTTPError

    transient = (ConnectionError, IncompleteReadError, ResponseStreamingError, HTTPError)
    where = f"remote '{REMOTE}' ({source.name})"
    try:
        # The .dir object first, alone and without retries: an unreachable server or a version never pushed
        # fails here, at once and clearly.
        try:
            fetch.fill(source, [version], cache_dir, jobs=1)
        except fetch.MissingObject as exc:
            raise RemoteError(f"{where}: version {version} is not there (its .dir object is missing: was it pushed?)") from exc
        except (BotoCoreError, ClientError, HTTPError, OSError) as exc:
            raise RemoteUnavailable(f"{where}: {_cause(exc)}") from exc
        listing = json.loads(fetch.cache_path(cache_dir, version).read_bytes())
        stats = fetch.fill(source, [entry["md5"] for entry in listing], cache_dir, jobs=jobs, transient=transient)
    except fetch.FetchError as exc:
        raise RemoteError(f"{where}: {exc}") from exc
    except (BotoCoreError, ClientError, HTTPError, OSError) as exc:
        raise RemoteError(f"{where}: {_cause(exc)}") from exc
    log.info("fetched %d objects (%d bytes), %d already in the cache", stats.fetched, stats.bytes, stats.present)
    return stats
