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
    """Every file under the cache dir except the metadata itself -> size in bytes."""
    found = {}
    for folder, _, names in os.walk(cache_dir):
        for name in names:
            path = Path(folder, name)
            rel = path.relative_to(cache_dir).as_posix()
            if rel != store.METADATA_NAME:
                found[rel] = path.stat().st_size
    return found


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


def _safe(rel: str) -> bool:
    try:
        trust.relpath(rel)
    except trust.UnsafeName:
        return False
    return True


def verify(cache_dir: Path, deep: bool = False, threads: int = 4, arrays: bool = True) -> Verdict:
    """Verdict on ``cache_dir``: expected files present, none extra, sizes right; ``deep`` also hashes content
    and, with ``arrays``, opens every recording to check shapes, dtype, channels and values against the metadata
    (the hash alone proves the files are the ones the metadata lists)."""
    try:
        metadata = store.read_metadata(cache_dir)
        expected = {rel: entry for rel, entry in metadata["files"].items()}
        problems = _summary_problems(metadata)
    except CacheError as exc:
        return Verdict(cache_dir, deep, problems=(str(exc),))
    except (KeyError, TypeError, AttributeError) as exc:
        return Verdict(cache_dir, deep, problems=(f"{cache_dir / store.METADATA_NAME}: malformed metadata ({exc})",))
    unsafe = [rel for rel in sorted(expected) if not _safe(rel)]
    if unsafe:  # names from the metadata become paths only through the gate
        return Verdict(cache_dir, deep, problems=tuple(f"{rel!r}: not a safe path inside the cache" for rel in unsafe))
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
