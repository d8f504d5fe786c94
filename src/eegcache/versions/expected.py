"""The version a run needs (:func:`expected_version`): ``cache.version``, else what ``dvc.lock`` names at
``cache.rev``, with the stage params recorded for it; and the refusal of overrides that ask for other params."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eegcache import config as cfg
from eegcache.config import Config
from eegcache.errors import ConfigError, EegcacheError
from eegcache.versions import dvc, identity, lockfile, objects
from eegcache.versions.lockfile import flatten


@dataclass(frozen=True)
class Wanted:
    """The version a run needs and what it is known to be."""

    hash: str | None  # "<md5>.dir"; None when only a build can name it
    origin: str  # where the hash comes from, for messages
    params: dict[str, Any] | None  # stage params recorded with it (flat keys); None: read from its metadata

    @property
    def dirname(self) -> str:
        if self.hash is None:
            raise EegcacheError("no cache version named: dvc.lock has none and none was given")
        return objects.dirname(self.hash)


def expected_version(config: Config, root: Path = Path()) -> Wanted:
    """The version a run needs: ``cache.version``, else the hash ``dvc.lock`` names at ``cache.rev`` (the working
    tree when empty), with the stage params recorded for it (by DVC in ``dvc.lock``, or in the metadata of a copy on
    the volume whose content hash matches). When the working tree names none yet, the version a build would make:
    hash unknown, params those of ``params.yaml`` (what ``dvc repro`` builds)."""
    rev = config.cache.rev or None
    if config.cache.version:
        recorded = None
        if rev is not None and (at_rev := dvc.version_at(root, rev)).hash == config.cache.version:
            recorded = at_rev.params
        return Wanted(config.cache.version, "cache.version", recorded)
    try:
        found = dvc.version_at(root, rev)
        return Wanted(found.hash, f"dvc.lock at {rev or 'the working tree'}", found.params)
    except (dvc.DvcError, lockfile.LockfileError, FileNotFoundError):
        if rev is not None:
            raise
    params_file = root / cfg.PARAMS_FILE
    recorded = (
        flatten(identity.stage_params(cfg.load(root, params_file=params_file))) if params_file.is_file() else None
    )
    return Wanted(None, "a build of params.yaml", recorded)


def refuse_conflicts(wanted: Wanted, recorded: dict[str, Any] | None, asked: dict[str, Any], after: str = "") -> None:
    """ConfigError naming every asked-for stage param the version was built with another value of."""
    differs = identity.conflicts(recorded, asked) if recorded is not None else []
    if differs:
        lines = "".join(f"\n  {line}" for line in differs)
        raise ConfigError(
            f"cache version {wanted.hash or '(to be built)'} ({wanted.origin}) was not built with the configuration "
            f"asked for:{lines}\nDrop those overrides to use it, or make the version they describe "
            f"(`eegcache params <overrides> && dvc repro`, or `dvc exp run -S ...`).{after}"
        )
