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

from eegcache import fetch, trust
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


def commit_of(root: Path, rev: str) -> str:
    """The commit a revision names, looked up by git as a revision only (``--end-of-options``): a value such as
    ``--output=FILE`` is refused before git sees it, and never parsed as an option."""
    trust.revision(rev, "git revision")
    return _git(root, "rev-parse", "--verify", "--end-of-options", f"{rev}^{{commit}}").strip()


def version_at(root: Path, rev: str | None = None) -> Version:
    """The cache version that ``dvc.lock`` names at ``rev`` (None: the working tree), with the params DVC recorded."""
    where = root / "dvc.lock" if rev is None else f"dvc.lock at {rev}"
    try:
        text = (root / "dvc.lock").read_text() if rev is None else _git(root, "show", f"{commit_of(root, rev)}:dvc.lock")
        stage = (yaml.safe_load(text) or {}).get("stages", {}).get(STAGE, {})
        for out in stage.get("outs", []):
            if str(out.get("md5", "")).endswith(".dir"):  # the cache directory (the metrics file is not one)
                params = flatten(stage.get("params", {}).get("params.yaml", {}))
                hash_ = trust.version_id(out["md5"], where)
                return Version(rev or "workspace", hash_, int(out.get("nfiles", 0)), int(out.get("size", 0)), params)
    except (yaml.YAMLError, AttributeError, TypeError, ValueError) as exc:
        raise RemoteError(f"not a readable dvc.lock ({exc})", where) from exc
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
        raise RemoteError(f"remote '{REMOTE}' ({url}): {cause(exc)}", root) from exc
    except (OSError, ValueError, BotoCoreError, ClientError) as exc:  # s3fs/botocore errors DVC did not wrap
        raise RemoteError(f"remote '{REMOTE}' ({url}): {cause(exc)}", root) from exc


def cause(exc: BaseException) -> str:
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
        listing = fetch.parse_listing(Path(local.oid_to_path(version.hash)).read_bytes(), version.hash, "the local DVC cache")
        oids = [*listing.values(), version.hash]  # the .dir last: it vouches for the rest
        present = _present(odb)
        checked = set(oids) if deep else {version.hash, listing[store.METADATA_NAME]}
        bad = [
            oid for oid in oids
            if present.get(oid) != Path(local.oid_to_path(oid)).stat().st_size
            or (oid in checked and _md5_object(odb, oid) != oid.removesuffix(".dir"))
        ]  # fmt: skip
        for oid in bad:
            log.info("re-sending %s: absent or damaged on the remote although DVC's index lists it", oid)
            odb.fs.put_file(local.oid_to_path(oid), odb.oid_to_path(oid))
    return count + len(bad)


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
    found = ((fetch.object_id(path), info["size"]) for path, info in odb.fs.fs.find(odb.path, detail=True).items())
    return {oid: size for oid, size in found if oid is not None}


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
    """Check that the version at ``rev`` (or ``version``) is whole on the remote, trusting no object by its name:
    the ``.dir`` listing must hash to the version, the metadata object to its id in the listing, and the metadata's
    file list must make the same version (so listing and metadata agree entry by entry); every listed object must be
    present with the size the metadata records. ``deep`` also downloads and re-hashes every object."""
    version = version or version_at(root, rev)
    with _repo(root) as repo:
        odb = repo.cloud.get_remote_odb(REMOTE, "remote-verify")
        url = repo.config["remote"][REMOTE]["url"]
        which = "the .dir"
        try:
            listing = fetch.parse_listing(_read_object(odb, version.hash), version.hash, url)
            which = "the metadata"
            metadata_bytes = _read_object(odb, listing[store.METADATA_NAME]) if store.METADATA_NAME in listing else b""
        except FileNotFoundError:
            return RemoteVerdict(version, url, 0, deep, (f"{version.hash}: {which} object is missing on the remote",))
        except (fetch.FetchError, trust.UnsafeName) as exc:
            return RemoteVerdict(version, url, 0, deep, (f"{version.hash}: {exc.reason}",))
        present = _present(odb)
        problems = _metadata_problems(version.hash, listing, metadata_bytes)
        sizes = {} if problems else {rel: e["size"] for rel, e in json.loads(metadata_bytes)["files"].items()}
        problems += [f"{rel} ({oid}): missing on the remote" for rel, oid in sorted(listing.items()) if oid not in present]
        problems += [
            f"{rel} ({listing[rel]}): {present[listing[rel]]} bytes on the remote, metadata says {size}"
            for rel, size in sorted(sizes.items()) if listing[rel] in present and present[listing[rel]] != size
        ]  # fmt: skip
        if deep and not problems:
            with ThreadPoolExecutor(max_workers=jobs) as pool:
                digests = dict(zip(listing, pool.map(lambda oid: _md5_object(odb, oid), listing.values())))
            problems += [f"{rel} ({listing[rel]}): content hash on the remote is {digests[rel]}"
                         for rel in sorted(listing) if digests[rel] != listing[rel]]  # fmt: skip
    return RemoteVerdict(version, url, len(listing) + 1, deep, tuple(problems))


def _metadata_problems(version: str, listing: dict[str, str], metadata_bytes: bytes) -> list[str]:
    """Why the metadata object does not vouch for the listing (empty when it does)."""
    if store.METADATA_NAME not in listing:
        return [f"{version}: the listing has no {store.METADATA_NAME}"]
    if store.md5_bytes(metadata_bytes) != listing[store.METADATA_NAME]:
        return [f"{store.METADATA_NAME} ({listing[store.METADATA_NAME]}): content hash on the remote is "
                f"{store.md5_bytes(metadata_bytes)}"]  # fmt: skip
    try:
        made = fetch.tree_hash(metadata_bytes, json.loads(metadata_bytes)["files"])
    except (ValueError, KeyError, TypeError) as exc:
        return [f"{store.METADATA_NAME}: malformed ({exc})"]
    return [] if made == version else [f"{store.METADATA_NAME}: its file list makes version {made}, not {version}"]


def versions(root: Path) -> list[tuple[Version, list[str]]]:
    """Cache versions named by tags and by commits that changed ``dvc.lock``: (version, revisions), newest first."""
    tags = _git(root, "tag", "--list", "--sort=-creatordate").split()
    commits = _git(root, "log", "--format=%h", "--", "dvc.lock").split()
    found: dict[str, tuple[Version, list[str]]] = {}
    for rev in tags + commits:
        try:
            version = version_at(root, rev)
        except (RemoteError, trust.UnsafeName):
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
        with _repo(project, wait_for_lock=True) as repo:
            repo.checkout(targets=[str(pointer)], force=True)
    finally:
        pointer.unlink(missing_ok=True)


def remote_source(settings: dict[str, Any], jobs: int) -> fetch.S3Source:
    """The remote (its settings from :func:`remote_settings`) as a fetch source with ``jobs`` connections."""
    try:
        return fetch.S3Source(settings, connections=jobs)
    except Exception as exc:  # noqa: BLE001 - botocore's configuration errors, named with the remote
        raise RemoteUnavailable(f"remote '{REMOTE}' ({settings.get('url')}): {cause(exc)}") from exc
