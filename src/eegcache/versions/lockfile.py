"""What ``dvc.lock`` says a cache version is: the DVC hash (``<md5>.dir``) of the ``build_cache`` stage's directory
output, its size and file count, and the stage params DVC recorded with it. Pure: the text comes from the working
tree or from git at a revision (:func:`eegcache.versions.dvc.version_at`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from eegcache import trust
from eegcache.errors import EegcacheError
from eegcache.versions import objects

STAGE = "build_cache"


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
        """The version's directory name on a volume (:func:`eegcache.versions.objects.dirname`)."""
        return objects.dirname(self.hash)


class LockfileError(EegcacheError):
    """A ``dvc.lock`` that cannot be read, or that names no cache version."""


def parse(text: str | bytes, rev: str | None, where: object) -> Version:
    """The cache version in ``text`` (a ``dvc.lock`` at ``rev``; None: the working tree), with the params DVC
    recorded. LockfileError naming ``where`` when it is not a readable lock or names no cache directory."""
    try:
        text = text.decode() if isinstance(text, bytes) else text  # UnicodeDecodeError is a ValueError
        stage = (trust.loads_yaml(text) or {}).get("stages", {}).get(STAGE, {})
        for out in stage.get("outs", []):
            if str(out.get("md5", "")).endswith(".dir"):  # the cache directory (the metrics file is not one)
                params = flatten(stage.get("params", {}).get("params.yaml", {}))
                hash_ = trust.version_id(out["md5"], where)
                return Version(rev or "workspace", hash_, int(out.get("nfiles", 0)), int(out.get("size", 0)), params)
    except (yaml.YAMLError, AttributeError, TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise LockfileError(f"not a readable dvc.lock ({exc})", where) from exc
    raise LockfileError(f"no directory output of stage {STAGE} in dvc.lock at {rev or 'the working tree'}", where)


def flatten(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested params as DVC lists them in ``dvc.lock``: ``{"preprocess": {"dtype": ..}}`` -> ``{"preprocess.dtype": ..}``."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        flat.update(flatten(value, f"{name}.") if isinstance(value, dict) else {name: value})
    return flat
