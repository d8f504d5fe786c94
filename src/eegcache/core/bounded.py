"""Bounded parsing of JSON from outside the process (metadata, listings, state): size and depth limits, one error
type (ValueError, as ``json.loads`` raises), so no document can exhaust memory or the interpreter's stack."""

from __future__ import annotations

import json
from typing import Any

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
    if len(data) > max_bytes:
        raise ValueError(f"{len(data):,} bytes, more than the {max_bytes:,} eegcache reads")
    try:
        return depth_checked(json.loads(data), max_depth)
    except RecursionError:
        raise ValueError(f"nested more than {max_depth} deep") from None
