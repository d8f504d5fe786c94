"""Verify a cache version, one word for every check: a cache directory against its own metadata (:func:`verify`:
``fast`` reads names, sizes and metadata only; ``deep`` re-hashes every file and checks its arrays), a copy on a
volume against the version's hash (:func:`verify_version`), and the version on the DVC remote
(:func:`verify_remote`). Each returns one :class:`Verdict`."""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from eegcache import trust
from eegcache.core import store
from eegcache.errors import CacheError
from eegcache.versions import dvc, objects
from eegcache.versions.lockfile import Version


@dataclass(frozen=True)
class Verdict:
    """What a verify found; ``where`` (a cache directory, or the version on the remote) is whole when ``ok``."""

    where: str
    deep: bool
    files: int = 0  # files checked (on the remote: objects, the .dir listing included)
    bytes: int = 0
    problems: tuple[str, ...] = ()
    damaged: tuple[str, ...] = ()  # listed files present with a wrong size or content
    params: dict[str, Any] | None = None  # the stage params the version's metadata records (verify_version)

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
_FIELDS = {
    "files": dict,
    "splits": dict,
    "skipped": list,
    "excluded": list,
    "channels": list,
    "dtype": str,
    "sample_rate": _NUMBER,
}
_ENTRY = {
    "split": str,
    "patient": str,
    "size": int,
    "md5": str,
    "samples": int,
    "seconds": _NUMBER,
    "seizure_seconds": _NUMBER,
    "seizures": list,
    "zero_filled": list,
}
_SPLIT = {"files": int, "patients": int, "seconds": _NUMBER, "seizure_seconds": _NUMBER, "bytes": int}


def _type_problems(where: str, value: Any, fields: dict[str, Any]) -> list[str]:
    if not isinstance(value, dict):
        return [f"{where} is {type(value).__name__}, not an object"]
    return [
        f"{where}: {key!r} missing or not {getattr(kind, '__name__', 'a number')}"
        for key, kind in fields.items()
        if not isinstance(value.get(key), kind) or isinstance(value.get(key), bool)
    ]


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


def _deep_problems(
    cache_dir: Path, rel: str, entry: dict[str, Any], metadata: dict[str, Any], arrays: bool
) -> list[str]:
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


def verify(
    cache_dir: Path, deep: bool = False, threads: int = 4, arrays: bool = True, metadata: dict[str, Any] | None = None
) -> Verdict:
    """Verdict on ``cache_dir``: expected files present, none extra, sizes right; ``deep`` also hashes content
    and, with ``arrays``, opens every recording to check shapes, dtype, channels and values against the metadata
    (the hash alone proves the files are the ones the metadata lists). ``metadata``: the cache's metadata as the
    caller read it (and checked against the version hash), else it is read here."""
    try:
        metadata = checked_metadata(cache_dir, metadata)
    except CacheError as exc:
        return Verdict(str(cache_dir), deep, problems=(str(exc),))
    expected = dict(metadata["files"])
    problems = _summary_problems(metadata)
    if not expected:  # what a build that skipped everything leaves: never a usable cache
        problems.append(
            f"the cache holds no recording ({len(metadata['skipped'])} skipped: see 'skipped' in {store.METADATA_NAME})"
        )
    found = _listing(cache_dir)
    problems += [f"{rel}: missing" for rel in sorted(expected.keys() - found.keys())]
    problems += [
        f"{rel}: not in the metadata (extra or partial file)" for rel in sorted(found.keys() - expected.keys())
    ]
    damaged = [rel for rel in sorted(expected.keys() & found.keys()) if found[rel] != expected[rel]["size"]]
    problems += [f"{rel}: {found[rel]} bytes, metadata says {expected[rel]['size']}" for rel in damaged]
    if deep and not problems:
        with ThreadPoolExecutor(max_workers=threads) as pool:  # hashing releases the GIL
            checked = pool.map(
                lambda rel: (rel, _deep_problems(cache_dir, rel, expected[rel], metadata, arrays)), sorted(expected)
            )
            for rel, found_problems in checked:
                problems += found_problems
                damaged += [rel] if found_problems else []
    size = sum(e["size"] for e in expected.values())
    return Verdict(str(cache_dir), deep, len(expected), size, tuple(problems), tuple(damaged))


def verify_remote(
    root: Path, rev: str | None = None, deep: bool = False, jobs: int = 16, version: Version | None = None
) -> Verdict:
    """Check that the version at ``rev`` (or ``version``) is whole on the remote, trusting no object by its name:
    the ``.dir`` listing must hash to the version, the metadata object to its id in the listing, and the metadata's
    file list must make the same version (so listing and metadata agree entry by entry); every listed object must be
    present with the size the metadata records. ``deep`` also downloads and re-hashes every object."""
    version = version or dvc.version_at(root, rev)
    with dvc.remote_odb(root, "remote-verify") as (odb, url):
        where = f"{version.hash} ({version.rev}) on {url}"
        which = "the .dir"
        try:
            listing = objects.parse_listing(_read_object(odb, version.hash), version.hash, url)
            which = "the metadata"
            metadata_bytes = _read_object(odb, listing[store.METADATA_NAME]) if store.METADATA_NAME in listing else b""
        except FileNotFoundError:
            return Verdict(where, deep, problems=(f"{version.hash}: {which} object is missing on the remote",))
        except (objects.ObjectError, trust.UnsafeName) as exc:
            return Verdict(where, deep, problems=(f"{version.hash}: {exc.reason}",))
        present = dvc.sizes_on_remote(odb)
        problems = _metadata_problems(version.hash, listing, metadata_bytes)
        sizes = {} if problems else {rel: e["size"] for rel, e in trust.loads_json(metadata_bytes)["files"].items()}
        problems += [
            f"{rel} ({oid}): missing on the remote" for rel, oid in sorted(listing.items()) if oid not in present
        ]
        problems += [
            f"{rel} ({listing[rel]}): {present[listing[rel]]} bytes on the remote, metadata says {size}"
            for rel, size in sorted(sizes.items())
            if listing[rel] in present and present[listing[rel]] != size
        ]
        if deep and not problems:
            with ThreadPoolExecutor(max_workers=jobs) as pool:
                digests = dict(zip(listing, pool.map(lambda oid: dvc.md5_object(odb, oid), listing.values())))
            problems += [
                f"{rel} ({listing[rel]}): content hash on the remote is {digests[rel]}"
                for rel in sorted(listing)
                if digests[rel] != listing[rel]
            ]
    return Verdict(where, deep, len(listing) + 1, sum(sizes.values()), tuple(problems))


def _read_object(odb: Any, oid: str) -> bytes:
    with odb.fs.open(odb.oid_to_path(oid), mode="rb") as handle:
        return handle.read()


def _metadata_problems(version: str, listing: dict[str, str], metadata_bytes: bytes) -> list[str]:
    """Why the metadata object does not vouch for the listing (empty when it does)."""
    if store.METADATA_NAME not in listing:
        return [f"{version}: the listing has no {store.METADATA_NAME}"]
    if store.md5_bytes(metadata_bytes) != listing[store.METADATA_NAME]:
        return [
            f"{store.METADATA_NAME} ({listing[store.METADATA_NAME]}): content hash on the remote is "
            f"{store.md5_bytes(metadata_bytes)}"
        ]
    try:
        made = objects.tree_hash(metadata_bytes, trust.loads_json(metadata_bytes)["files"])
    except (ValueError, KeyError, TypeError) as exc:
        return [f"{store.METADATA_NAME}: malformed ({exc})"]
    return [] if made == version else [f"{store.METADATA_NAME}: its file list makes version {made}, not {version}"]


def verify_version(path: Path, version: str, deep: bool = False) -> Verdict:
    """Is ``path`` a complete, intact copy of ``version`` (``<md5>.dir``)? ``deep`` also hashes every file."""
    meta_path = path / store.METADATA_NAME
    try:  # read once: the bytes hashed into the version are the ones verified
        metadata_bytes = meta_path.read_bytes()
        metadata = store.parse_metadata(metadata_bytes, meta_path)
    except FileNotFoundError:
        return Verdict(str(path), deep, problems=(f"{meta_path}: metadata missing",))
    except OSError as exc:
        return Verdict(str(path), deep, problems=(f"{meta_path}: metadata unreadable ({exc.strerror or exc})",))
    except CacheError as exc:
        return Verdict(str(path), deep, problems=(str(exc),))
    files = metadata.get("files")
    if not isinstance(files, dict) or not all(isinstance(e, dict) and "md5" in e for e in files.values()):
        return Verdict(str(path), deep, problems=(f"{meta_path}: malformed metadata (no file list with md5s)",))
    if (found := objects.tree_hash(metadata_bytes, files)) != version:
        why = f"{meta_path}: its file list makes version {found}, not the expected {version}"
        return Verdict(str(path), deep, problems=(why,), damaged=(store.METADATA_NAME,))
    # deep: content hashes only; they equal the md5s that make up the version hash checked above
    verdict = verify(path, deep=deep, threads=2 * (os.cpu_count() or 1), arrays=False, metadata=metadata)
    params = metadata.get("params") if isinstance(metadata.get("params"), dict) else None
    return dataclasses.replace(verdict, params=params)


def version_of(cache_dir: Path) -> str:
    """The version hash (``<md5>.dir``) a cache directory's metadata makes, as DVC would hash it if every file is
    what the metadata lists (:func:`verify_version` then checks that); CacheError when the metadata is missing or
    malformed. Nothing but the metadata file is read."""
    meta_path = cache_dir / store.METADATA_NAME
    try:
        metadata_bytes = meta_path.read_bytes()
    except FileNotFoundError as exc:
        raise CacheError("metadata missing: no cache here (build it, or name a version)", meta_path) from exc
    metadata = checked_metadata(cache_dir, store.parse_metadata(metadata_bytes, meta_path))
    return objects.tree_hash(metadata_bytes, metadata["files"])


def recorded_params(path: Path, version: str) -> dict[str, Any] | None:
    """The stage params recorded in the metadata of the copy at ``path`` when its file list and bytes make
    ``version`` (so the metadata is that version's own; data files are not read); else None."""
    try:
        metadata_bytes = (path / store.METADATA_NAME).read_bytes()
        metadata = trust.loads_json(metadata_bytes)
        if objects.tree_hash(metadata_bytes, metadata["files"]) == version and isinstance(metadata.get("params"), dict):
            return metadata["params"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    return None
