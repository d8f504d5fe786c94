"""Install cache versions on a volume (``<volume>/cache/tusz/<hash>/``, see :mod:`eegcache.volume.layout`).

A version is installed from a fetch source through the volume's own DVC cache (``<versions>/.dvc/cache``, on the
same filesystem so files are hard-linked, not stored twice) and appears by one rename, complete. It is announced only
once :func:`eegcache.versions.verify.verify_version` accepts it; a damaged copy goes to quarantine
(:mod:`eegcache.volume.quarantine`). Nothing else on the volume is touched.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
from pathlib import Path

from eegcache import locks
from eegcache.core import store
from eegcache.errors import CacheError
from eegcache.versions import dvc, fetch, objects
from eegcache.versions.lockfile import Version
from eegcache.versions.verify import verify_version
from eegcache.volume.layout import DVC_CACHE, MARKER, PARTIAL, VOLUME_LOCK, dvc_folders, in_use
from eegcache.volume.quarantine import quarantine

log = logging.getLogger(__name__)


def install(
    source: fetch.Source,
    version: str,
    versions: Path,
    jobs: int = 16,
    size: int = 0,
    nfiles: int = 0,
    root: Path | None = None,
) -> tuple[Path, fetch.FillStats]:
    """``<versions>/<dirname>/`` filled from ``source`` through the DVC cache at ``<versions>/.dvc/cache``.

    Safe to run from several processes at once on one volume: objects enter the cache by atomic renames, each
    process checks out into its own hidden directory, DVC's checkouts wait for each other, and the version
    directory appears by one rename, complete (a process that loses the race discards its copy). A killed run
    leaves only hidden partial directories, removed by the next run on the same host.
    """
    with in_use(versions, root):  # root: the volume root, below which no link is followed
        return _install(source, version, versions, jobs, size, nfiles)


def _install(
    source: fetch.Source, version: str, versions: Path, jobs: int, size: int, nfiles: int
) -> tuple[Path, fetch.FillStats]:
    """:func:`install`'s body, with the volume's shared lock held."""
    final = versions / objects.dirname(version)
    if _valid_already(final, version):
        return final, fetch.FillStats(0, 0, 0)
    _init_project(versions)
    _remove_dead_partials(versions)
    stats = fetch.fill_version(source, version, versions / DVC_CACHE, jobs)
    if _valid_already(final, version):
        return final, stats
    partial = versions / f"{PARTIAL}{objects.dirname(version)}.{socket.gethostname()}.{os.getpid()}"
    partial.mkdir()  # ours from the start: anything already at the name (a planted link) fails here
    dvc.checkout(versions, version, partial, size=size, nfiles=nfiles)
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


def _valid_already(final: Path, version: str) -> bool:
    """Whether ``final`` holds ``version`` already, checked (fast) before it is announced; a damaged copy is moved to
    quarantine, so the caller installs a fresh one instead of returning it."""
    if not final.is_dir() or final.is_symlink():
        return False
    checked = verify_version(final, version)
    if checked.ok:
        return True
    moved = quarantine(final, checked.problems, checked.damaged)
    log.warning("%s was damaged (%s): moved to %s, installing it again", final, checked.problems[0], moved)
    return False


def pull_version(
    root: Path, version: Version, target: Path, jobs: int | None = None, mount: Path | None = None
) -> Path:
    """``target/<dirname>/`` (read-only files) holding ``version``, fetched from the project's remote (settings and
    credentials passed in memory, never written under ``target``) or, with ``mount``, from a directory holding the
    remote's layout (a read-only bucket mount); every object's md5 is checked before it enters ``target``'s DVC
    cache. ``jobs``: concurrent transfers (default: the remote's ``jobs``, else 16)."""
    refuse_foreign(target)  # the user's directory: before anything is written there, the lock file included
    path = target / version.dirname
    if not path.is_dir():
        if mount is not None:
            source: fetch.Source = fetch.DirSource(mount)
        else:
            source, jobs = dvc.remote_source(root, jobs)
        path = install(source, version.hash, target, jobs or 16, version.size, version.nfiles)[0]
    checked = verify_version(path, version.hash)
    if not checked.ok:  # announced only once checked; a damaged copy goes aside so a rerun fetches it again
        moved = quarantine(path, checked.problems, checked.damaged)
        raise CacheError(f"the pulled copy is damaged ({checked.problems[0]}); moved to {moved}: run again", path)
    return path


def _config_text(versions: Path) -> str:
    """The volume project's ``.dvc/config``: git-less, its site cache on the volume's filesystem."""
    return (
        "[core]\n    no_scm = True\n"
        f"    site_cache_dir = {versions / '.dvc' / 'site'}\n"
        '[cache]\n    type = "reflink,hardlink,symlink,copy"\n'
    )


def refuse_foreign(versions: Path) -> None:
    """CacheError unless ``versions`` is eegcache's to write: absent, empty, carrying eegcache's marker, or a volume
    an earlier eegcache made (its ``.dvc/config`` is the one eegcache writes). Another DVC or git project, or any
    folder of someone's files, is refused with its path: eegcache never rewrites what it did not make."""
    if (versions / MARKER).is_file() and not (versions / MARKER).is_symlink():
        return
    config = versions / ".dvc" / "config"
    if config.is_file() and not config.is_symlink() and config.read_text(errors="replace") == _config_text(versions):
        return  # made by eegcache before the marker existed
    try:
        entries = {entry.name for entry in os.scandir(versions)}
    except FileNotFoundError:
        return
    if entries - {VOLUME_LOCK}:
        kind = "a DVC project" if ".dvc" in entries else "a git repository" if ".git" in entries else "not empty"
        raise CacheError(
            f"{kind}, not a volume of eegcache's (no {MARKER}): pull versions into a new or empty directory; "
            "nothing here was changed",
            versions,
        )


def _init_project(versions: Path) -> None:
    """A git-less DVC project at ``versions`` (checked ours by :func:`refuse_foreign`), marked as eegcache's
    (written atomically, so processes starting together agree)."""
    dvc_folders(versions)  # before DVC or anything of ours writes there: no link below the volume
    if not (versions / MARKER).is_file():
        store.atomic_write(versions / MARKER, b"an eegcache volume: cache versions, their DVC cache, quarantine\n")
    config = versions / ".dvc" / "config"
    if not config.is_file() or config.read_text() != _config_text(versions):
        store.atomic_write(config, _config_text(versions).encode())


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


def install_tree(root: Path, out_dir: Path, versions: Path, push: bool = True) -> tuple[str, int, Path]:
    """A cache built outside DVC's workspace (a sharded build's staging directory) pushed to the project's remote
    (with ``push``) and installed into ``versions`` -> (its version hash, objects uploaded, the installed copy)."""
    version, source = fetch.tree_source(out_dir)
    uploaded = dvc.push_tree(root, version, source) if push else 0
    return version, uploaded, install(source, version, versions)[0]
