"""The cache file format: one uncompressed ``.npz`` per recording plus ``.cache_metadata.json``.

Layout (the contract in DESIGN.md)::

    <cache>/.cache_metadata.json
    <cache>/<split>/<patient>_sNNN_tNNN.npz

Each ``.npz`` is a plain, *stored* (uncompressed) zip of ``.npy`` members, so ``numpy.load`` reads it
and :func:`open_recording` memory-maps ``eeg`` and ``labels`` in place. We write the zip ourselves
rather than with ``numpy.savez`` because savez stamps members with the wall-clock time, which would
break byte-identical rebuilds; we also pad each member so its array data starts on a 64-byte boundary.
Every write goes to a temporary file in the same folder and is renamed into place.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import mmap
import os
import stat
import struct
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from eegcache.errors import CacheError

SCHEMA_VERSION = 1
METADATA_NAME = ".cache_metadata.json"
JOURNAL_NAME = ".build_journal.jsonl"
TMP_MARK = ".tmp-"
SUFFIX = ".npz"

_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed member timestamps: no wall clock in the cache
_ALIGN = 64
_PAD_ID = 0xD935  # extra-field id used for alignment padding (as Android's zipalign)
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")  # zip local file header, 30 bytes
_FACT_KEYS = ("sample_rate", "channels", "zero_filled", "duration_s")


@dataclass(frozen=True)
class RecordingFacts:
    """Small per-recording facts stored beside the arrays."""

    sample_rate: float  # Hz of the stored signal
    channels: tuple[str, ...]  # stored channel names, in row order of ``eeg``
    zero_filled: tuple[str, ...]  # channels missing from the source and stored as zeros
    duration_s: float  # seconds covered by the stored samples


@dataclass(frozen=True)
class CachedRecording:
    """A recording read back: ``eeg`` [channels, samples] and ``labels`` [samples] (memory-mapped or loaded)."""

    eeg: np.ndarray
    labels: np.ndarray
    facts: RecordingFacts


def _member(name: str, offset: int) -> zipfile.ZipInfo:
    """A stored member whose data (the .npy bytes) starts on an aligned offset within the archive."""
    info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    start = offset + _LOCAL_HEADER.size + len(name.encode())
    pad = (-(start + 4)) % _ALIGN
    info.extra = struct.pack("<HH", _PAD_ID, pad) + b"\0" * pad
    return info


def encode_recording(eeg: np.ndarray, labels: np.ndarray, facts: RecordingFacts) -> bytes:
    """The exact bytes of one cache file; deterministic for equal inputs."""
    out = io.BytesIO()
    _encode_into(out, eeg, labels, facts)
    return out.getvalue()


def _encode_into(handle: BinaryIO, eeg: np.ndarray, labels: np.ndarray, facts: RecordingFacts) -> None:
    """Write the cache file's bytes to the seekable ``handle``, each array streamed in place (``numpy``'s
    ``write_array`` writes large arrays in 16 MiB chunks), so writing costs no copy of ``eeg``."""
    if eeg.ndim != 2 or labels.ndim != 1 or eeg.shape[1] != labels.shape[0]:
        raise ValueError(f"eeg {eeg.shape} and labels {labels.shape} do not describe the same samples")
    if eeg.shape[0] != len(facts.channels):
        raise ValueError(f"eeg has {eeg.shape[0]} rows but {len(facts.channels)} channel names")
    arrays = {
        "eeg": eeg,
        "labels": labels.astype(np.uint8, copy=False),
        "sample_rate": np.float64(facts.sample_rate),
        "channels": np.array(facts.channels, dtype="U16"),
        "zero_filled": np.array(facts.zero_filled, dtype="U16"),
        "duration_s": np.float64(facts.duration_s),
    }
    with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_STORED) as archive:
        for key, value in arrays.items():
            array = np.asarray(value, order="C")
            info = _member(f"{key}.npy", handle.tell())
            header = io.BytesIO()
            np.lib.format.write_array_header_1_0(header, np.lib.format.header_data_from_array_1_0(array))
            info.file_size = len(header.getvalue()) + array.nbytes  # as ZipFile.writestr sets it (zip64 or not)
            with archive.open(info, "w") as member:
                np.lib.format.write_array(member, array, allow_pickle=False)


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """A new file written through the yielded handle, via a temporary file in the same folder: flushed, fsynced and
    renamed to ``path`` when the block ends; removed if it raises."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}{TMP_MARK}")
    try:
        with os.fdopen(fd, "w+b") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder, fsync, then rename."""
    with atomic_file(path) as handle:
        handle.write(data)


def md5_bytes(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def open_regular(path: Path) -> BinaryIO:
    """``path`` opened for reading if it is a regular file (symbolic links followed), else OSError "not a regular
    file": a FIFO would block the open and a device (``/dev/zero``) never end, so it is opened without blocking and
    checked before anything is read."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def md5_file(path: Path, chunk: int = 1 << 22) -> str:
    """MD5 hex digest of a file's content (the hash DVC uses for its objects); OSError for anything but a regular
    file (:func:`open_regular`)."""
    digest = hashlib.md5(usedforsecurity=False)
    with open_regular(path) as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def write_recording(path: Path, eeg: np.ndarray, labels: np.ndarray, facts: RecordingFacts) -> tuple[int, str]:
    """Write one cache file atomically (the bytes of :func:`encode_recording`, streamed: no copy of ``eeg`` is made);
    return (size in bytes, md5 hex digest)."""
    with atomic_file(path) as handle:
        _encode_into(handle, eeg, labels, facts)
        size = handle.tell()
        handle.seek(0)
        digest = hashlib.md5(usedforsecurity=False)
        while block := handle.read(1 << 22):
            digest.update(block)
    return size, digest.hexdigest()


def _member_array(handle: Any, info: zipfile.ZipInfo, path: Path, mmap: bool) -> np.ndarray:
    handle.seek(info.header_offset)
    header = _LOCAL_HEADER.unpack(handle.read(_LOCAL_HEADER.size))
    if header[0] != b"PK\x03\x04" or info.compress_type != zipfile.ZIP_STORED:
        raise CacheError(f"member {info.filename} is not a stored zip entry", path)
    handle.seek(info.header_offset + _LOCAL_HEADER.size + header[-2] + header[-1])
    version = np.lib.format.read_magic(handle)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read_header(handle)
    if dtype.hasobject:
        raise CacheError(f"member {info.filename} holds Python objects", path)
    order = "F" if fortran else "C"
    if mmap:
        return np.memmap(path, dtype=dtype, mode="r", offset=handle.tell(), shape=shape, order=order)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    data = handle.read(nbytes)
    if len(data) != nbytes:
        raise CacheError(f"member {info.filename} is truncated", path)
    return np.frombuffer(data, dtype=dtype).reshape(shape, order=order)


def open_recording(path: Path, mmap: bool = True) -> CachedRecording:
    """Open a cache file; with ``mmap`` the arrays are memory-mapped (no full-file read)."""
    try:
        with zipfile.ZipFile(path) as archive, open(path, "rb") as handle:
            members = {info.filename.removesuffix(".npy"): info for info in archive.infolist()}
            missing = {"eeg", "labels", *_FACT_KEYS} - members.keys()
            if missing:
                raise CacheError(f"missing arrays {sorted(missing)}", path)
            small = {key: _member_array(handle, members[key], path, mmap=False) for key in _FACT_KEYS}
            eeg = _member_array(handle, members["eeg"], path, mmap)
            labels = _member_array(handle, members["labels"], path, mmap)
    except (OSError, zipfile.BadZipFile, ValueError, struct.error) as exc:
        raise CacheError(f"unreadable cache file ({exc})", path) from exc
    facts = RecordingFacts(
        sample_rate=float(small["sample_rate"]),
        channels=tuple(str(c) for c in small["channels"]),
        zero_filled=tuple(str(c) for c in small["zero_filled"]),
        duration_s=float(small["duration_s"]),
    )
    if eeg.ndim != 2 or labels.shape != (eeg.shape[1],) or eeg.shape[0] != len(facts.channels):
        raise CacheError(f"inconsistent shapes eeg {eeg.shape}, labels {labels.shape}", path)
    return CachedRecording(eeg=eeg, labels=labels, facts=facts)


def prefetch_columns(array: np.ndarray, start: int, stop: int) -> None:
    """Ask the kernel to read columns [start, stop) of every row of a memory-mapped [rows, samples] array.

    A window touches one short range per channel row; page faults on them one by one each trigger the
    disk's read-ahead, which on a cold file fetches far more than the window. One ``MADV_WILLNEED`` per
    row requests exactly the ranges needed, together. A no-op for arrays that are not memory-mapped.
    """
    mapping = getattr(array, "base", None)
    if not isinstance(mapping, mmap.mmap) or not hasattr(mmap, "MADV_WILLNEED") or array.ndim != 2:
        return
    origin = array.offset % mmap.ALLOCATIONGRANULARITY  # where the array starts inside the mapping
    row_stride, item = array.strides
    for row in range(array.shape[0]):
        first = origin + row * row_stride + start * item
        aligned = first - first % mmap.PAGESIZE
        mapping.madvise(mmap.MADV_WILLNEED, aligned, first - aligned + (stop - start) * item)


def recording_path(cache_dir: Path, split: str, bname: str) -> Path:
    return cache_dir / split / f"{bname}{SUFFIX}"


def dump_json(obj: Any) -> bytes:
    """Canonical JSON bytes (sorted keys, fixed indentation) so equal content gives equal bytes."""
    return (json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=True) + "\n").encode()


def write_metadata(cache_dir: Path, metadata: dict[str, Any]) -> None:
    atomic_write(cache_dir / METADATA_NAME, dump_json(metadata))


def read_metadata(cache_dir: Path) -> dict[str, Any]:
    """The cache's metadata; CacheError when it is missing (an incomplete build) or not valid JSON."""
    path = cache_dir / METADATA_NAME
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise CacheError("metadata missing: the cache was never completed (build it or pull it)", path) from exc
    except OSError as exc:
        raise CacheError(f"metadata unreadable ({exc})", path) from exc
    return parse_metadata(data, path)


def parse_metadata(data: bytes, path: Path) -> dict[str, Any]:
    """Metadata from the bytes of ``path`` (read once by a caller that also hashes them); CacheError when they are
    not JSON of our schema version."""
    try:
        metadata = json.loads(data.decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CacheError(f"metadata unreadable ({exc})", path) from exc
    if not isinstance(metadata, dict) or metadata.get("schema_version") != SCHEMA_VERSION:
        found = metadata.get("schema_version") if isinstance(metadata, dict) else None
        raise CacheError(f"schema version {found!r}, expected {SCHEMA_VERSION}", path)
    return metadata
