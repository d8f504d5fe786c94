"""Put a valid copy of the expected cache version on the volume from the cheapest source that has one.

Sources are tried in the order of the ``cache`` config group (``conf/cache/<preset>.yaml``):

- ``volume``: ``<volume>/cache/tusz/<hash>/`` as it is, if it passes validation;
- ``remote``: the DVC S3 remote, fetched into the volume's DVC cache and checked out (:mod:`eegcache.volume.install`);
- ``mount``: the same remote prefix as a read-only mounted directory, used the same way;
- ``build``: ``dvc repro`` from raw data in the project, only with ``allow_build``; then pushed and installed.

Whatever the source, the version directory is validated (``fast`` or ``deep``) against the version's content hash
before it is used; a damaged one is quarantined (see :mod:`eegcache.volume.quarantine`). A source that is not available (no
mount, no credentials, server down) is *skipped*, one that was tried and failed is *rejected*; both with the reason.

The version's identity (the params it was built with) is what was recorded with it: ``dvc.lock`` at the revision
that names it, else its own metadata once its content hash matches; never today's ``conf/``. When the caller's
overrides ask for stage params the version was not built with, that is a :class:`ConfigError` naming each key
(``preprocess.dtype: version float32, config float16``), raised before the volume is touched whenever the
identity is known up front; a copy whose content hash matches is never quarantined for it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from eegcache import config as cfg
from eegcache.config import Config
from eegcache.errors import ConfigError, EegcacheError
from eegcache.versions import dvc, fetch, identity, verify
from eegcache.versions.expected import Wanted, expected_version, refuse_conflicts
from eegcache.versions.lockfile import flatten
from eegcache.volume import install, layout, quarantine

log = logging.getLogger(__name__)


class ResolveError(EegcacheError):
    """No source gave a valid copy of the version; ``report`` holds every source's reason."""

    def __init__(self, reason: str, report: Report):
        super().__init__(reason)
        self.report = report


class _Skip(Exception):
    """The source is not available here."""


class _Reject(Exception):
    """The source was tried and gave no valid copy."""


@dataclass(frozen=True)
class Attempt:
    source: str
    outcome: str  # used | rejected | skipped
    reason: str
    seconds: float
    bytes: int = 0


@dataclass
class Report:
    """What a resolve did: JSON for the trainer (:meth:`as_dict`), a table for people (:func:`table`)."""

    version: str | None
    preset: str
    validation: str
    volume: str
    path: str | None = None
    source: str | None = None
    attempts: list[Attempt] = field(default_factory=list)
    seconds: float = 0.0
    bytes: int = 0
    files: int = 0
    saved_gpu_hours: float = 0.0
    saved_usd: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Run:
    config: Config
    root: Path
    wanted: Wanted
    versions: Path  # <volume>/cache/tusz
    say: Callable[[str], None]
    files: int = 0  # of the last copy accepted
    params: dict[str, Any] | None = None  # the stage params the accepted copy's metadata records

    @property
    def dir(self) -> Path:
        return self.versions / self.wanted.dirname


def _path(root: Path, value: str) -> Path:
    return Path(value) if os.path.isabs(value) else root / value


def volume_root(config: Config, root: Path = Path()) -> Path:
    """The volume (``cache.volume_root``; relative paths are taken from the project root). ConfigError when it is
    empty or its versions would share a directory with the project's own cache (the DVC stage output)."""
    if not config.cache.volume_root.strip():
        raise ConfigError("cache.volume_root is empty: name the volume's directory")
    path = _path(root, config.cache.volume_root)
    versions, output = layout.versions_root(path).resolve(), _path(root, config.build.out_dir).resolve()
    if versions == output or output in versions.parents or versions in output.parents:
        raise ConfigError(
            f"cache.volume_root = {config.cache.volume_root!r} puts the volume's versions at {versions}, "
            f"which overlaps the project's cache {output} (the DVC stage output): use another directory"
        )
    return path


def resolve(
    config: Config, root: Path = Path(), say: Callable[[str], None] = log.info, asked: dict[str, Any] | None = None
) -> Report:
    """Make the expected cache version available on the volume; returns the report (``report.path``).

    ``asked``: the stage params the caller's overrides ask for (:func:`eegcache.versions.identity.requested`); a version
    built with other values of them is a ConfigError, never a reason to reject a copy."""
    started = time.perf_counter()
    asked = asked or {}
    wanted = expected_version(config, root)
    versions = layout.versions_root(volume_root(config, root))
    with layout.in_use(
        versions, volume_root(config, root)
    ):  # a prune waits until the answer is given (and a resolve for a running prune)
        return _resolve(_Run(config, root, wanted, versions, say), asked, started)


def _resolve(run: _Run, asked: dict[str, Any], started: float) -> Report:
    """:func:`resolve`'s body, with the volume's shared lock held."""
    cache, wanted, versions, say = run.config.cache, run.wanted, run.versions, run.say
    if asked:  # before anything is fetched or moved: from the copy on the volume, dvc.lock, or the source's metadata
        refuse_conflicts(wanted, _recorded(run), asked)
    report = Report(wanted.hash, cache.preset, cache.validation, str(versions))
    for name in cache.sources:
        t0 = time.perf_counter()
        try:
            path, moved, note = SOURCES[name](run)
        except (_Skip, _Reject) as exc:
            outcome = "skipped" if isinstance(exc, _Skip) else "rejected"
            report.attempts.append(Attempt(name, outcome, str(exc), round(time.perf_counter() - t0, 3)))
            say(f"{name}: {outcome}: {exc}")
            continue
        seconds = time.perf_counter() - t0
        report.attempts.append(Attempt(name, "used", f"{note}; valid ({cache.validation})", round(seconds, 3), moved))
        _mark_used(path, say)
        report.version, report.path, report.source, report.bytes = run.wanted.hash, str(path), name, moved
        report.files = run.files
        break
    report.seconds = round(time.perf_counter() - started, 3)
    saved = max(cache.rebuild_gpu_hours - report.seconds / 3600, 0.0) if report.path else 0.0
    report.saved_gpu_hours, report.saved_usd = round(saved, 3), round(saved * cache.gpu_price_per_hour, 2)
    if report.path is None:
        lines = "".join(f"\n  - {a.source}: {a.outcome}: {a.reason}" for a in report.attempts)
        raise ResolveError(
            f"no valid source for cache version {wanted.hash or '(none named)'} (preset {cache.preset}, "
            f"sources tried in order):{lines}\nNothing was deleted; damaged copies, if any, are in "
            f"{versions / layout.QUARANTINE}.",
            report,
        )
    if run.params is not None:  # the accepted copy's own metadata: what its bytes are
        built = flatten(run.params)
        if run.wanted.params is not None and built != run.wanted.params:
            say(
                f"note: {wanted.origin} records other params for {run.wanted.hash} than its metadata "
                f"({'; '.join(identity.conflicts(built, run.wanted.params))}): the metadata describes the bytes"
            )
        refuse_conflicts(run.wanted, built, asked, f"\nThe copy at {report.path} is valid and stays there.")
    return report


def _recorded(run: _Run) -> dict[str, Any] | None:
    """The stage params recorded with the wanted version, without changing anything: the metadata of a copy on the
    volume (when its content hash matches), else what ``dvc.lock`` recorded, else the metadata object read from a
    source into memory (checked against the version's listing)."""
    if run.wanted.hash is None:
        return run.wanted.params
    on_volume = verify.recorded_params(run.dir, run.wanted.hash)
    if on_volume is not None:
        return flatten(on_volume)
    if run.wanted.params is not None:
        return run.wanted.params
    for make in (_mount_source, _remote_source):
        try:
            source = make(run)[0]
        except _Skip:
            continue
        try:
            params = fetch.peek_params(source, run.wanted.hash)
        except Exception as exc:  # noqa: BLE001 - unreadable now: the sources are tried (and reported) below
            run.say(f"could not read the version's metadata from {source.name} before fetching ({exc})")
            continue
        if params is not None:
            return flatten(params)
    return None


def _mount_source(run: _Run) -> tuple[fetch.Source, int]:
    """The mounted remote prefix as a source, with its transfer count; _Skip naming why there is none."""
    if not run.config.cache.mount_point:
        raise _Skip("no mount configured (cache.mount_point is empty)")
    mount = _path(run.root, run.config.cache.mount_point)
    if not mount.is_dir():
        raise _Skip(f"{mount} is not mounted (no such directory)")
    return fetch.DirSource(mount), run.config.cache.jobs or 16


def _remote_source(run: _Run) -> tuple[fetch.Source, int]:
    """The project's DVC remote as a source, with its transfer count; _Skip naming why it cannot be used."""
    try:
        return dvc.remote_source(run.root, run.config.cache.jobs or None)
    except dvc.RemoteError as exc:
        raise _Skip(str(exc)) from exc


def _mark_used(path: Path, say: Callable[[str], None]) -> None:
    try:
        layout.mark_used(path)
    except OSError as exc:  # a read-only volume serves its versions all the same; prune just cannot rank them
        say(f"could not record the use of {path} ({exc.strerror or exc}); prune will not rank it")


def _accept(run: _Run, path: Path) -> None:
    """Validate ``path`` as the expected version; quarantine it and reject the source if it fails."""
    result = verify.verify_version(path, run.wanted.hash or "", deep=run.config.cache.validation == "deep")
    if result.ok:
        run.files, run.params = result.files, result.params
        return
    more = f" (and {len(result.problems) - 1} more)" if len(result.problems) > 1 else ""
    try:
        moved = quarantine.quarantine(path, result.problems, result.damaged)
    except OSError as exc:  # a read-only volume: the copy stays where it is, and is not used
        raise _Reject(
            f"{path.name} is damaged: {result.problems[0]}{more}; it could not be moved aside ({exc.strerror or exc})"
        ) from exc
    raise _Reject(
        f"{path.name} is damaged: {result.problems[0]}{more}; moved to {moved or 'quarantine by another run'}"
    )


def _require_version(run: _Run) -> None:
    """Only a build can serve a run that names no version."""
    if run.wanted.hash is None:
        raise _Reject("no version named (dvc.lock has none and cache.version is empty)")


def _from_volume(run: _Run) -> tuple[Path, int, str]:
    _require_version(run)
    if not run.dir.is_dir():
        raise _Reject(f"version {run.wanted.dirname} is not on the volume ({run.versions})")
    _accept(run, run.dir)
    return run.dir, 0, "on the volume"


def _install(run: _Run, source: fetch.Source, jobs: int) -> tuple[Path, int, str]:
    """Fetch the version from ``source`` into the volume (unless a valid copy is there already) and validate it."""
    _require_version(run)
    if run.dir.is_dir():
        try:
            _accept(run, run.dir)
            return run.dir, 0, "already on the volume, nothing fetched"
        except _Reject as exc:
            run.say(f"the copy on the volume was set aside: {exc}")
    for attempt in (1, 2):
        try:
            root = volume_root(run.config, run.root)
            path, stats = install.install(source, run.wanted.hash or "", run.versions, jobs, root=root)
        except (fetch.SourceUnavailable, dvc.RemoteUnavailable) as exc:
            raise _Skip(str(exc)) from exc
        except (fetch.FetchError, dvc.DvcError) as exc:
            raise _Reject(str(exc)) from exc
        except OSError as exc:  # e.g. a read-only or full volume: nothing can be installed here
            where = exc.filename or run.versions
            raise _Skip(f"cannot write to the volume ({where}: {exc.strerror or exc})") from exc
        try:
            _accept(run, path)
            break
        except _Reject as exc:  # damaged objects already in the volume's cache were linked and are now evicted:
            if attempt == 2 or stats.present == 0:  # one more install fetches them from the source
                raise
            run.say(f"the copy made from the volume's DVC cache was damaged ({exc}); fetching again from {source.name}")
    return (
        path,
        stats.bytes,
        f"fetched {stats.fetched} object(s) from {source.name}, {stats.present} already in the volume's DVC cache",
    )


def _from_remote(run: _Run) -> tuple[Path, int, str]:
    return _install(run, *_remote_source(run))


def _from_mount(run: _Run) -> tuple[Path, int, str]:
    return _install(run, *_mount_source(run))


def build_estimate(config: Config, root: Path) -> tuple[int, int, float]:
    """(EDF files, bytes, estimated seconds) of a build of the raw data at this project's measured throughput.
    Walked with a stack (any depth), entering no linked folder; a link that leads nowhere counts nothing (the
    build skips it too)."""
    count = total = 0
    stack = [str(_path(root, config.data.raw_dir))]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue  # unreadable or gone: the build names it
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
            elif entry.name.lower().endswith(".edf"):
                try:
                    total += os.stat(entry.path).st_size
                    count += 1
                except OSError:
                    pass
    return count, total, total / 1e9 * config.cache.build_seconds_per_gb


def _from_build(run: _Run) -> tuple[Path, int, str]:
    cache, root = run.config.cache, run.root
    if not cache.allow_build:
        raise _Skip("building is not allowed (cache.allow_build: false)")
    raw = _path(root, run.config.data.raw_dir)
    if not raw.is_dir():
        raise _Skip(f"raw data directory {raw} not found")
    would_build = flatten(identity.stage_params(cfg.load(root, params_file=root / cfg.PARAMS_FILE)))
    if run.wanted.params is not None and (differs := identity.conflicts(run.wanted.params, would_build)):
        raise _Skip(
            f"params.yaml describes another version than {run.wanted.hash} ({'; '.join(differs)}): "
            "`dvc repro` here would build that one, so nothing was built (check out the revision that "
            "built it, or ask for the version params.yaml describes)"
        )
    count, size, seconds = build_estimate(run.config, root)
    started = time.perf_counter()
    run.say(
        f"building from {raw}: {count} EDF files, {size / 1e9:.2f} GB; estimated {seconds / 60:.1f} min, "
        f"~${seconds / 3600 * cache.gpu_price_per_hour:.2f} at ${cache.gpu_price_per_hour:.2f}/h"
    )
    try:
        built = dvc.repro(root)
    except EegcacheError as exc:
        raise _Reject(exc.reason) from exc
    if run.wanted.hash not in (None, built.hash):
        raise _Reject(
            f"the build made version {built.hash}, not the expected {run.wanted.hash} "
            "(raw data, code or params differ from the ones that version was built with)"
        )
    run.wanted = replace(run.wanted, hash=built.hash)
    if cache.push_after_build:
        try:
            sent = dvc.push(root)
            run.say(f"pushed {built.hash}: {sent} object(s) uploaded")
        except dvc.RemoteError as exc:
            run.say(f"built, but the push failed (push later with `eegcache push`): {exc}")
    path, moved, note = _install(run, fetch.DirSource(root / ".dvc" / "cache"), cache.jobs or 16)
    return path, moved, f"built with `dvc repro` ({time.perf_counter() - started:.1f} s); {note}"


SOURCES: dict[str, Callable[[_Run], tuple[Path, int, str]]] = {
    "volume": _from_volume,
    "remote": _from_remote,
    "mount": _from_mount,
    "build": _from_build,
}


def table(report: Report) -> Any:
    """The report as a short rich table for people."""
    from rich.table import Table

    title = f"cache {report.version or '(none)'} — preset {report.preset}, {report.validation} validation"
    grid = Table(title=title)
    for column in ("source", "outcome", "seconds", "MB moved", "why"):
        grid.add_column(column, justify="right" if column in ("seconds", "MB moved") else "left", overflow="fold")
    for a in report.attempts:
        style = {"used": "green", "rejected": "red", "skipped": "yellow"}[a.outcome]
        grid.add_row(a.source, a.outcome, f"{a.seconds:.2f}", f"{a.bytes / 1e6:.1f}", a.reason, style=style)
    if report.path:
        grid.caption = (
            f"{report.path}: {report.files} recordings in {report.seconds:.2f} s; saved vs a rebuild "
            f"on the GPU: {report.saved_gpu_hours:.2f} GPU-h, ${report.saved_usd:.2f}"
        )
    return grid
