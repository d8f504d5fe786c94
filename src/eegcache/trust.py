"""The one gate for names that come from outside the process: configuration, the command line, a cache's metadata,
``.dir`` listings, remote listings and git. Each function returns the name unchanged when it is safe, else raises
:class:`UnsafeName` naming where it came from. Every filesystem path built from such a name goes through
:func:`inside`, which refuses anything that resolves outside its root (``..``, absolute paths, symlinks)."""

from __future__ import annotations

import contextlib
import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from eegcache.errors import ConfigError, EegcacheError

_OBJECT_ID = re.compile(r"[0-9a-f]{32}(\.dir)?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class UnsafeName(EegcacheError):
    """A name from outside (metadata, a listing, the command line, a config value) that is not what it must be."""


def object_id(text: object, where: object = None) -> str:
    """A DVC object id: 32 lowercase hex digits, ``.dir`` after them for a directory listing."""
    if not isinstance(text, str) or not _OBJECT_ID.fullmatch(text):
        raise UnsafeName(f"{text!r} is not a DVC object id (32 lowercase hex digits, optionally '.dir')", where)
    return text


def version_id(text: object, where: object = None) -> str:
    """A cache version: the object id of a directory listing, ``<32 hex>.dir``."""
    if not object_id(text, where).endswith(".dir"):
        raise UnsafeName(f"{text!r} is not a cache version ('<32 hex digits>.dir')", where)
    return str(text)


def relpath(text: object, where: object = None) -> str:
    """A relative POSIX path inside a cache: not empty or absolute, normalised (no ``.``, ``..`` or empty parts),
    no backslash, NUL, newline or other control characters."""
    if not isinstance(text, str) or not text or _CONTROL.search(text) or "\\" in text:
        raise UnsafeName(f"{text!r} is not a safe relative path (empty, control characters or backslash)", where)
    parts = text.split("/")
    if text.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise UnsafeName(f"{text!r} is not a safe relative path (absolute, '..', '.' or an empty part)", where)
    return text  # already normal: what PurePosixPath(text) would print


def inside(root: Path, *parts: str, where: object = None) -> Path:
    """``root`` joined with ``parts`` (each a :func:`relpath` or an :func:`object_id`-like name), refused unless it
    resolves inside ``root`` with symlinks followed, so neither ``..`` nor a planted link leads elsewhere."""
    path = Path(root).joinpath(*(relpath(part, where) for part in parts))
    base = Path(root).resolve()
    resolved = path.resolve()
    if resolved != base and base not in resolved.parents:
        raise UnsafeName(f"{'/'.join(parts)!r} leads outside {root} (to {resolved})", where)
    return path


def folders_below(root: Path, *parts: str, mode: int = 0o755) -> Path:
    """``root/parts...`` as real folders, each made (``mode``, never wider) if missing and none a symbolic link:
    the one way eegcache makes a folder below a root it writes under (a volume, a run directory). ``root`` itself
    may be a link (the user chose it); a link or a file at any component below it is refused naming it, so
    nothing eegcache or DVC writes there can land outside."""
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)  # the root itself is the user's choice (its own links followed)
    for part in "/".join(parts).split("/"):
        path = path / relpath(part, root)
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, mode & 0o755)
        info = os.lstat(path)
        if not stat.S_ISDIR(info.st_mode):
            kind = "a symbolic link" if stat.S_ISLNK(info.st_mode) else "not a folder"
            raise UnsafeName(f"{path} is {kind}: eegcache writes below {root} only through folders of its own")
    return path


def revision(text: object, where: object = None) -> str:
    """A git revision to look up, never an option: not empty, not starting with '-', no whitespace or control
    characters. (Git is also told ``--end-of-options``; this refuses early with a clear message.)"""
    if not isinstance(text, str) or not text or text.startswith("-") or re.search(r"\s", text) or _CONTROL.search(text):
        raise UnsafeName(f"{text!r} is not a git revision", where)
    return text


SECRET_VARIABLES = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")  # environment variables whose values never show
_SHORTEST_SECRET = 8  # shorter values (a test's "s") would match ordinary text


def secrets_in_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The secret values this process holds: variable name -> value (those long enough to be told from text)."""
    environ = os.environ if environ is None else environ
    return {name: environ[name] for name in SECRET_VARIABLES if len(environ.get(name, "")) >= _SHORTEST_SECRET}


def redact(text: str, environ: Mapping[str, str] | None = None) -> str:
    """``text`` with every secret value of the environment replaced by ``<$NAME>``: what any message printed or
    raised by eegcache goes through before it leaves the process."""
    for name, value in secrets_in_environment(environ).items():
        text = text.replace(value, f"<${name}>")
    return text


def secret_keys(mapping: Mapping[str, Any], environ: Mapping[str, str] | None = None, prefix: str = "") -> list[str]:
    """The keys (dotted) of a composed configuration whose string values hold a secret of the environment."""
    found = []
    values = tuple(secrets_in_environment(environ).values())
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            found += secret_keys(value, environ, f"{name}.")
        elif isinstance(value, (list, tuple)):
            found += secret_keys(dict(enumerate(value)), environ, f"{name}.")
        elif isinstance(value, str) and any(secret in value for secret in values):
            found.append(name)
    return found


MAX_DOCUMENT_BYTES = 64 << 20  # JSON/YAML eegcache parses: a TUSZ-sized metadata is 2.6 MB
MAX_DEPTH = 64  # nesting: eegcache's own documents go 5 deep


def depth_checked(value: Any, max_depth: int) -> Any:
    """``value`` when it nests at most ``max_depth`` deep (walked without recursion), else ValueError."""
    level = [value]
    for _ in range(max_depth):
        level = [
            item
            for node in level
            if isinstance(node, (dict, list))
            for item in (node.values() if isinstance(node, dict) else node)
            if isinstance(item, (dict, list))
        ]
        if not level:
            return value
    raise ValueError(f"nested more than {max_depth} deep")


def loads_json(data: str | bytes, max_bytes: int = MAX_DOCUMENT_BYTES, max_depth: int = MAX_DEPTH) -> Any:
    """JSON from outside the process, bounded: ValueError (as ``json.loads`` raises) when it is larger than
    ``max_bytes``, nests deeper than ``max_depth``, or is not JSON; callers turn it into their one-line error."""
    import json

    if len(data) > max_bytes:
        raise ValueError(f"{len(data):,} bytes, more than the {max_bytes:,} eegcache reads")
    try:
        return depth_checked(json.loads(data), max_depth)
    except RecursionError:
        raise ValueError(f"nested more than {max_depth} deep") from None


def refuse_secrets(mapping: Mapping[str, Any], source: object) -> None:
    """ConfigError naming the keys (never the values) of a composition that hold a secret of the environment."""
    leaked = secret_keys(mapping)
    if leaked:
        raise ConfigError(
            f"{', '.join(leaked)} would hold the value of a secret of the environment (e.g. AWS_SECRET_ACCESS_KEY); "
            "credentials come from the environment or .dvc/config.local only",
            source,
        )


def loads_yaml(text: str | bytes, max_bytes: int = MAX_DOCUMENT_BYTES, max_depth: int = MAX_DEPTH) -> Any:
    """YAML (safe) from outside the process, bounded as :func:`loads_json`; ValueError for anything wrong."""
    import yaml

    if len(text) > max_bytes:
        raise ValueError(f"{len(text):,} bytes, more than the {max_bytes:,} eegcache reads")
    try:
        return depth_checked(yaml.safe_load(text), max_depth)
    except RecursionError:
        raise ValueError(f"nested more than {max_depth} deep") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"not valid YAML ({exc})") from exc
