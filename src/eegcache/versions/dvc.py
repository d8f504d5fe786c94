"""The DVC and git adapter, and the only module that runs either: the S3 remote's configuration, push, pull,
versions named by revisions, ``dvc repro`` and DVC's checkout of a fetched version.

A cache *version* is what ``dvc.lock`` names at a git revision (:mod:`eegcache.versions.lockfile`); its objects live
on the remote in DVC's layout (:func:`eegcache.versions.objects.object_key`) and the ``.dir`` object lists them.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from eegcache import trust
from eegcache.core import store
from eegcache.errors import EegcacheError, cause
from eegcache.versions import fetch, lockfile, objects
from eegcache.versions.lockfile import STAGE, Version

log = logging.getLogger(__name__)

REMOTE = "storage"


class DvcError(EegcacheError):
    """A DVC or git command that failed in a project (not on the remote), naming the project and the cause."""


class RemoteError(DvcError):
    """A remote that cannot be used (credentials, server, bucket, missing objects), naming the remote and the cause."""


class RemoteUnavailable(RemoteError):
    """The remote cannot be reached or refuses us (server down, bad or missing credentials, no bucket)."""


def _git(root: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        raise DvcError(f"git {' '.join(args)}: {proc.stderr.strip()}", root)
    return proc.stdout


def commit_of(root: Path, rev: str) -> str:
    """The commit a revision names, looked up by git as a revision only (``--end-of-options``): a value such as
    ``--output=FILE`` is refused before git sees it, and never parsed as an option."""
    trust.revision(rev, "git revision")
    return _git(root, "rev-parse", "--verify", "--end-of-options", f"{rev}^{{commit}}").strip()


def version_at(root: Path, rev: str | None = None) -> Version:
    """The cache version that ``dvc.lock`` names at ``rev`` (None: the working tree), with the params DVC recorded."""
    if rev is None:
        return lockfile.parse((root / "dvc.lock").read_bytes(), None, root / "dvc.lock")
    return lockfile.parse(_git_show(root, f"{commit_of(root, rev)}:dvc.lock"), rev, f"dvc.lock at {rev}")


def _git_show(root: Path, spec: str) -> bytes:
    """A file's bytes at a revision, undecoded: they are data for :func:`lockfile.parse` (a lock that is not UTF-8
    is an unreadable lock, not a crash)."""
    proc = subprocess.run(["git", "show", spec], cwd=root, capture_output=True)
    if proc.returncode != 0:
        raise DvcError(f"git show {spec}: {proc.stderr.decode(errors='replace').strip()}", root)
    return proc.stdout


def repro(root: Path) -> Version:
    """``dvc repro`` of the cache stage in the project at ``root`` (with this interpreter's ``eegcache`` on PATH)
    -> the version it recorded."""
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run(["dvc", "repro", STAGE], cwd=root, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise DvcError(f"dvc repro failed: {(proc.stderr or proc.stdout).strip()[-2000:]}", root)
    return version_at(root)


@contextmanager
def _repo(
    root: Path, config: dict[str, Any] | None = None, wait_for_lock: bool = False, remote: bool = True
) -> Iterator[Any]:
    """A DVC repo (with in-memory ``config`` merged, if given) whose failures come out as RemoteError naming
    the remote and the cause (``remote``), or as DvcError naming the project (a local checkout)."""
    from botocore.exceptions import BotoCoreError, ClientError
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    def failed(exc: BaseException) -> DvcError:
        if not remote:
            return DvcError(f"DVC in {root}: {cause(exc)}", root)
        url = (config or {}).get("remote", {}).get(REMOTE, {}).get("url") or _url(root)
        return RemoteError(f"remote '{REMOTE}' ({url}): {cause(exc)}", root)

    if not (root / ".git").exists():  # a copy of the project without git (a container): DVC must not look for it
        config = {**(config or {}), "core": {**(config or {}).get("core", {}), "no_scm": True}}
    try:
        with Repo(str(root), config=config, _wait_for_lock=wait_for_lock) as repo:
            yield repo
    except DvcException as exc:
        raise failed(exc) from exc
    except (OSError, ValueError, BotoCoreError, ClientError) as exc:  # s3fs/botocore errors DVC did not wrap
        raise failed(exc) from exc


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


def push(root: Path, jobs: int | None = None, deep: bool = False) -> int:
    """Upload the workspace's cache version (all of it, metadata included); returns the objects uploaded.

    DVC decides what to send from its own index of the remote, so objects deleted or damaged behind its back
    would stay so: afterwards the remote is listed and every object that is absent or has another size than the
    local one is sent again, and the ``.dir`` and metadata objects (small; what every reader trusts first) are
    re-hashed and sent again if damaged. ``deep`` re-hashes every object on the remote the same way.
    """
    version = version_at(root)
    with _repo(root) as repo:
        count = int(repo.push(targets=[_stage(root)], jobs=jobs, remote=REMOTE))
        odb = repo.cloud.get_remote_odb(REMOTE, "push")
        local = repo.cache.local
        listing = objects.parse_listing(
            Path(local.oid_to_path(version.hash)).read_bytes(), version.hash, "the local DVC cache"
        )
        oids = [*listing.values(), version.hash]  # the .dir last: it vouches for the rest
        present = sizes_on_remote(odb)
        checked = set(oids) if deep else {version.hash, listing[store.METADATA_NAME]}
        bad = [
            oid
            for oid in oids
            if present.get(oid) != Path(local.oid_to_path(oid)).stat().st_size
            or (oid in checked and md5_object(odb, oid) != oid.removesuffix(".dir"))
        ]
        for oid in bad:
            log.info("re-sending %s: absent or damaged on the remote although DVC's index lists it", oid)
            odb.fs.put_file(local.oid_to_path(oid), odb.oid_to_path(oid))
    return count + len(bad)


def push_tree(root: Path, version: str, source: fetch.TreeSource) -> int:
    """Upload a cache directory built outside DVC's workspace (e.g. by sharded containers; ``version`` and
    ``source`` from :func:`eegcache.versions.fetch.tree_source`) to the project's remote without copying it into a
    DVC cache: the objects the remote lacks, then the ``.dir`` object last. Returns the objects uploaded."""
    with _repo(root) as repo:
        odb = repo.cloud.get_remote_odb(REMOTE, "push")
        present = sizes_on_remote(odb)
        missing = [oid for oid in source.paths if oid not in present]
        for oid in missing:
            odb.fs.put_file(str(source.root / source.paths[oid]), odb.oid_to_path(oid))
        if version not in present:
            odb.fs.pipe_file(odb.oid_to_path(version), source.blobs[version])
    return len(missing) + (version not in present)


def pull(root: Path, jobs: int | None = None) -> None:
    """Fetch and check out the cache version ``dvc.lock`` names in the working tree."""
    with _repo(root) as repo:
        repo.pull(targets=[_stage(root)], jobs=jobs, remote=REMOTE)


@contextmanager
def remote_odb(root: Path, operation: str) -> Iterator[tuple[Any, str]]:
    """The project's remote as DVC's object database (an fsspec filesystem in DVC's layout) and its URL, for
    ``operation`` (named in DVC's messages); failures come out as RemoteError naming the remote."""
    with _repo(root) as repo:
        yield repo.cloud.get_remote_odb(REMOTE, operation), repo.config["remote"][REMOTE]["url"]


def md5_object(odb: Any, oid: str) -> str:
    """The md5 of an object's bytes on the remote (streamed, never held whole)."""
    digest = hashlib.md5(usedforsecurity=False)
    with odb.fs.open(odb.oid_to_path(oid), mode="rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def sizes_on_remote(odb: Any) -> dict[str, int]:
    """Every object on the remote -> its size in bytes (one listing of ``files/md5/``)."""
    found = ((objects.object_id(path), info["size"]) for path, info in odb.fs.fs.find(odb.path, detail=True).items())
    return {oid: size for oid, size in found if oid is not None}


def versions(root: Path) -> list[tuple[Version, list[str]]]:
    """Cache versions named by tags and by commits that changed ``dvc.lock``: (version, revisions), newest first."""
    tags = _git(root, "tag", "--list", "--sort=-creatordate").split()
    commits = _git(root, "log", "--format=%h", "--", "dvc.lock").split()
    found: dict[str, tuple[Version, list[str]]] = {}
    for rev in tags + commits:
        try:
            version = version_at(root, rev)
        except (DvcError, lockfile.LockfileError, trust.UnsafeName):
            continue  # a revision whose dvc.lock has no cache stage yet, or a tag named like an option
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
    # created here, never through whatever may sit at the name already (a planted link): O_EXCL | O_NOFOLLOW
    fd = os.open(pointer, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w") as handle:
        handle.write(yaml.safe_dump({"outs": [{k: v for k, v in entry.items() if v}]}))
    try:
        with _repo(project, wait_for_lock=True, remote=False) as repo:
            repo.checkout(targets=[str(pointer)], force=True)
    finally:
        pointer.unlink(missing_ok=True)


def remote_source(root: Path, jobs: int | None = None) -> tuple[fetch.S3Source, int]:
    """The project's remote as a fetch source and its transfer count (``jobs``, else the remote's ``jobs``, else 16):
    settings and credentials passed in memory, never written anywhere. RemoteError when none is configured,
    RemoteUnavailable when botocore refuses the settings."""
    settings = remote_settings(root)
    jobs = jobs or int(settings.get("jobs") or 16)
    name = f"remote '{REMOTE}' ({settings.get('url')})"
    try:
        return fetch.S3Source(settings, connections=jobs, name=name), jobs
    except Exception as exc:
        raise RemoteUnavailable(f"{name}: {cause(exc)}") from exc
