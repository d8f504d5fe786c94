"""Check a cache against its own metadata: ``fast`` (names, sizes, metadata; reads no file content)
and ``deep`` (re-hashes every file and checks its arrays, in parallel threads)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eegcache import trust
from eegcache.core import store
from eegcache.errors import CacheError


@dataclass(frozen=True)
class Verdict:
    cache_dir: Path
    deep: bool
    files: int = 0
    bytes: int = 0
    problems: tuple[str, ...] = field(default_factory=tuple)
    damaged: tuple[str, ...] = field(default_factory=tuple)  # listed files present with a wrong size or content

    @property
    def ok(self) -> bool:
        return not self.problems


def _listing(cache_dir: Path) -> dict[str, int]:
    """Every file under the cache dir except the metadata itself -> size in bytes (as ``os.walk`` sees them: links
    to folders are not entered, links to files are followed). Plain strings, no Path per file: a 7,361-file
    version is listed in a few tens of milliseconds."""
    found: dict[str, int] = {}

    def walk(folder: str, prefix: str) -> None:
        with os.scandir(folder) as entries:
            for entry in entries:
                rel = prefix + entry.name
                if entry.is_dir():
                    if not entry.is_symlink():
                        walk(entry.path, rel + "/")
                elif rel != store.METADATA_NAME:
                    found[rel] = entry.stat().st_size

    walk(os.fspath(cache_dir), "")
    return found


# The metadata fields every reader uses (verify, summary, train's dataset) and their types; store.read_metadata
# checks only that it is a JSON object of our schema version, so hand-edited or damaged metadata stops here.
_NUMBER = (int, float)
_FIELDS = {"files": dict, "splits": dict, "skipped": list, "excluded": list, "channels": list, "dtype": str,
           "sample_rate": _NUMBER}  # fmt: skip
_ENTRY = {"split": str, "patient": str, "size": int, "md5": str, "samples": int, "seconds": _NUMBER,
          "seizure_seconds": _NUMBER, "seizures": list, "zero_filled": list}  # fmt: skip
_SPLIT = {"files": int, "patients": int, "seconds": _NUMBER, "seizure_seconds": _NUMBER, "bytes": int}


def _type_problems(where: str, value: Any, fields: dict[str, Any]) -> list[str]:
    if not isinstance(value, dict):
        return [f"{where} is {type(value).__name__}, not an object"]
    return [f"{where}: {key!r} missing or not {getattr(kind, '__name__', 'a number')}" for key, kind in fields.items()
            if not isinstance(value.get(key), kind) or isinstance(value.get(key), bool)]  # fmt: skip


def metadata_problems(metadata: dict[str, Any]) -> list[str]:
    """What makes ``metadata`` (as store.read_metadata returns it) unusable: a field missing or of the wrong type
    at the top, in a file entry (seizures as [start, stop) sample pairs) or in a split's totals."""
    problems = _type_problems("metadata", metadata, _FIELDS)
    if problems:
        return problems
    for rel, entry in metadata["files"].items():
        try:  # names from the metadata become paths only through the gate
            trust.relpath(rel)
        except trust.UnsafeName:
            problems.append(f"file {rel!r}: not a safe path inside the cache")
        problems += _type_problems(f"file {rel!r}", entry, _ENTRY)
        seizures = entry.get("seizures") if isinstance(entry, dict) else None
        if isinstance(seizures, list) and not all(
            isinstance(s, list) and len(s) == 2 and all(type(i) is int for i in s) for s in seizures
        ):
            problems.append(f"file {rel!r}: 'seizures' is not a list of [start, stop] sample pairs")
    for split, totals in metadata["splits"].items():
        problems += _type_problems(f"split {split!r}", totals, _SPLIT)
    return problems


def checked_metadata(cache_dir: Path, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """The cache's metadata (``metadata``: as the caller already read it); CacheError when it is missing,
    unreadable or malformed (naming the first problems)."""
    metadata = store.read_metadata(cache_dir) if metadata is None else metadata
    problems = metadata_problems(metadata)
    if problems:
        more = f" and {len(problems) - 5} more" if len(problems) > 5 else ""
        raise CacheError(f"malformed metadata: {'; '.join(problems[:5])}{more}", cache_dir / store.METADATA_NAME)
    return metadata


def _summary_problems(metadata: dict[str, Any]) -> list[str]:
    counted: dict[str, int] = {}
    for entry in metadata["files"].values():
        counted[entry["split"]] = counted.get(entry["split"], 0) + 1
    declared = {split: s["files"] for split, s in metadata["splits"].items()}
    return [] if counted == declared else [f"split counts {declared} do not match the file list {counted}"]


def _deep_problems(cache_dir: Path, rel: str, entry: dict[str, Any], metadata: dict[str, Any], arrays: bool) -> list[str]:
    path = cache_dir / rel
    if store.md5_file(path) != entry["md5"]:
        return [f"{rel}: content hash differs from metadata (corrupt or modified)"]
    if not arrays:
        return []
    try:
        rec = store.open_recording(path, mmap=True)
    except CacheError as exc:
        return [str(exc)]
    problems = []
    if list(rec.facts.channels) != metadata["channels"] or str(rec.eeg.dtype) != metadata["dtype"]:
        problems.append(f"{rel}: channels or dtype differ from metadata")
    if rec.eeg.shape[1] != entry["samples"]:
        problems.append(f"{rel}: {rec.eeg.shape[1]} samples, metadata says {entry['samples']}")
    if not np.isfinite(rec.eeg).all() or rec.labels.max(initial=0) > 1:
        problems.append(f"{rel}: non-finite samples or labels other than 0/1")
    return problems


def verify(cache_dir: Path, deep: bool = False, threads: int = 4, arrays: bool = True,
           metadata: dict[str, Any] | None = None) -> Verdict:  # fmt: skip
    """Verdict on ``cache_dir``: expected files present, none extra, sizes right; ``deep`` also hashes content
    and, with ``arrays``, opens every recording to check shapes, dtype, channels and values against the metadata
    (the hash alone proves the files are the ones the metadata lists). ``metadata``: the cache's metadata as the
    caller read it (and checked against the version hash), else it is read here."""
    try:
        metadata = checked_metadata(cache_dir, metadata)
    except CacheError as exc:
        return Verdict(cache_dir, deep, problems=(str(exc),))
    expected = dict(metadata["files"])
    problems = _summary_problems(metadata)
    if not expected:  # what a build that skipped everything leaves: never a usable cache
        problems.append(f"the cache holds no recording ({len(metadata['skipped'])} skipped: see 'skipped' in "
                        f"{store.METADATA_NAME})")  # fmt: skip
    found = _listing(cache_dir)
    problems += [f"{rel}: missing" for rel in sorted(expected.keys() - found.keys())]
    problems += [f"{rel}: not in the metadata (extra or partial file)" for rel in sorted(found.keys() - expected.keys())]
    damaged = [rel for rel in sorted(expected.keys() & found.keys()) if found[rel] != expected[rel]["size"]]
    problems += [f"{rel}: {found[rel]} bytes, metadata says {expected[rel]['size']}" for rel in damaged]
    if deep and not problems:
        with ThreadPoolExecutor(max_workers=threads) as pool:  # hashing releases the GIL
            checked = pool.map(lambda rel: (rel, _deep_problems(cache_dir, rel, expected[rel], metadata, arrays)), sorted(expected))
            for rel, found_problems in checked:
                problems += found_problems
                damaged += [rel] if found_problems else []
    size = sum(e["size"] for e in expected.values())
    return Verdict(cache_dir, deep, len(expected), size, tuple(problems), tuple(damaged))
