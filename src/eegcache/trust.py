"""The one gate for names that come from outside the process: configuration, the command line, a cache's metadata,
``.dir`` listings, remote listings and git. Each function returns the name unchanged when it is safe, else raises
:class:`UnsafeName` naming where it came from. Every filesystem path built from such a name goes through
:func:`inside`, which refuses anything that resolves outside its root (``..``, absolute paths, symlinks)."""

from __future__ import annotations

import re
from pathlib import Path

from eegcache.errors import EegcacheError

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


def revision(text: object, where: object = None) -> str:
    """A git revision to look up, never an option: not empty, not starting with '-', no whitespace or control
    characters. (Git is also told ``--end-of-options``; this refuses early with a clear message.)"""
    if not isinstance(text, str) or not text or text.startswith("-") or re.search(r"\s", text) or _CONTROL.search(text):
        raise UnsafeName(f"{text!r} is not a git revision", where)
    return text
