"""A cache version's identity in terms of the configuration: the stage params the cache depends on
(:func:`stage_params`), the ones a caller's overrides ask for (:func:`requested`), and how a version's recorded
params differ from those (:func:`conflicts`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eegcache.config import CONF_DIR, Config, load
from eegcache.errors import ConfigError
from eegcache.versions.lockfile import flatten


def requested(project: Path, overrides: Sequence[str]) -> dict[str, Any]:
    """The stage params (flat keys such as ``preprocess.dtype``) that ``overrides`` ask for: every key they name (a
    group selection such as ``preprocess=tcp22`` names its whole group) or change. Empty without overrides."""
    if not overrides:
        return {}
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        named = [o.key_or_group for o in OverridesParser.create().parse_overrides(overrides=list(overrides))]
    except HydraException as exc:
        raise ConfigError(f"bad override: {exc}", Path(project) / CONF_DIR) from exc
    asked = flatten(stage_params(load(project, overrides)))
    default = flatten(stage_params(load(project)))
    return {
        key: value
        for key, value in asked.items()
        if value != default.get(key) or any(key == n or key.startswith(f"{n}.") for n in named)
    }


def conflicts(recorded: dict[str, Any], asked: dict[str, Any]) -> list[str]:
    """``"key: version <recorded>, config <asked>"`` for each asked-for stage param (flat keys) the version differs in."""
    return [
        f"{key}: version {_shown(recorded.get(key))}, config {_shown(value)}"
        for key, value in sorted(asked.items())
        if recorded.get(key) != value
    ]


def _shown(value: Any) -> str:
    return "(not recorded)" if value is None else str(value)


def stage_params(config: Config) -> dict[str, Any]:
    """The params the cache depends on (what dvc.yaml lists for the stage), recorded in the metadata; their
    :func:`stable_hash` is the metadata's ``params_hash``."""
    data = dataclasses.asdict(config.data)  # tuples as lists: equal to what dvc.lock and the metadata record
    return {
        "data": {k: list(v) if isinstance(v, tuple) else v for k, v in data.items() if k != "raw_dir"},
        "preprocess": dataclasses.asdict(config.preprocess),
        "build": {"on_error": config.build.on_error},
    }
