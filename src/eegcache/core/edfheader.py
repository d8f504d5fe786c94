"""The fixed EDF header layout, read and checked before edfio decodes a file.

edfio tolerates what a cache must not: it reads a BDF file (24-bit samples) as 16-bit EDF, a header record count
of -1, and data longer or shorter than the header says, warning only that the header disagrees with the data, and it
reads an EDF+D file with gaps as one continuous signal. :func:`check` reads the header bytes itself (the layout of
the EDF and EDF+ specifications) and names each of these for what it is.

Layout: 256 bytes (version 0-8, header size 184-192, reserved 192-236 ("EDF+C"/"EDF+D" in EDF+), number of data
records 236-244, seconds per data record 244-252, number of signals 252-256), then 256 bytes per signal, stored field
by field (16-byte labels of every signal, then 80-byte transducers, ...; samples per data record at 256 + 216·ns).
The data records follow: per record, each signal's samples in turn, 2-byte little-endian integers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import BinaryIO

import numpy as np

from eegcache.errors import RecordingError

FIXED_BYTES = 256
SIGNAL_BYTES = 256
BDF_VERSION = b"\xffBIOSEMI"
ANNOTATION_LABEL = "EDF Annotations"
_SAMPLES_PER_RECORD = 216  # offset of the field, in units of the signal count, after the fixed part
_ONSET = re.compile(rb"([+-]\d+(?:\.\d*)?)\x14\x14")  # a data record's time-keeping TAL: "+12.5" 0x14 0x14
_GAPS_LISTED = 5


@dataclass(frozen=True)
class Header:
    """The numbers of an EDF header that say how its data is laid out (all checked against the file's size)."""

    records: int  # data records
    record_s: Decimal  # seconds per data record, as written
    labels: tuple[str, ...]  # signal labels (latin-1, stripped)
    samples_per_record: tuple[int, ...]  # per signal
    header_bytes: int
    reserved: str  # "EDF+C", "EDF+D" or "" (plain EDF)


def check(path: Path) -> Header:
    """The layout of EDF file ``path``; RecordingError naming what is wrong: a BDF file, an unreadable header (a data
    record duration that is not positive included), a record count of -1, data longer or shorter than the header says,
    or an EDF+D file with gaps."""
    try:
        with open(path, "rb") as handle:
            fixed = handle.read(FIXED_BYTES)
            size = path.stat().st_size
            if fixed[:8] == BDF_VERSION:
                raise RecordingError("BDF file (24-bit samples, version field 0xFF 'BIOSEMI'), not EDF", path)
            if len(fixed) < FIXED_BYTES:
                raise RecordingError(f"not a readable EDF file ({size} bytes: shorter than the 256-byte header)", path)
            header = _parse(path, fixed, handle, size)
    except OSError as exc:
        raise RecordingError(f"cannot read the EDF file: {exc.strerror or exc}", path) from exc
    _check_size(path, header, size)
    if header.reserved.startswith("EDF+D"):
        _check_continuous(path, header)
    return header


def _number(path: Path, raw: bytes, what: str, kind: type) -> int | Decimal:
    text = raw.decode("latin-1").strip()
    try:
        value = kind(text)
    except (ValueError, InvalidOperation):
        raise RecordingError(f"not a readable EDF file ({what} {text!r} in the header is not a number)", path) from None
    if kind is Decimal and not value.is_finite():
        raise RecordingError(f"not a readable EDF file ({what} {text!r} in the header is not a number)", path)
    return value


def _parse(path: Path, fixed: bytes, handle: BinaryIO, size: int) -> Header:
    if fixed[:8].strip() != b"0":
        raise RecordingError(f"not a readable EDF file (version field {fixed[:8]!r} is not '0')", path)
    signals = int(_number(path, fixed[252:256], "number of signals", int))
    if signals < 1:
        raise RecordingError(f"not a readable EDF file (header gives {signals} signals)", path)
    header_bytes = FIXED_BYTES + SIGNAL_BYTES * signals
    stated = int(_number(path, fixed[184:192], "header size", int))
    if stated != header_bytes:
        raise RecordingError(f"not a readable EDF file (header size field says {stated} bytes, but {signals} "
                             f"signals take {header_bytes})", path)  # fmt: skip
    if size < header_bytes:
        raise RecordingError(f"not a readable EDF file (file ends after {size} bytes, inside the {header_bytes}-byte "
                             f"header of {signals} signals)", path)  # fmt: skip
    per_signal = handle.read(SIGNAL_BYTES * signals)
    records = int(_number(path, fixed[236:244], "number of data records", int))
    if records == -1:
        raise RecordingError("header gives -1 data records (unknown, written by a recorder that did not finish)",
                             path)  # fmt: skip
    if records < 0:
        raise RecordingError(f"not a readable EDF file (header gives {records} data records)", path)
    labels = tuple(per_signal[i : i + 16].decode("latin-1").strip() for i in range(0, 16 * signals, 16))
    start = _SAMPLES_PER_RECORD * signals
    samples = tuple(int(_number(path, per_signal[i : i + 8], f"samples per data record of {label!r}", int))
                    for label, i in zip(labels, range(start, start + 8 * signals, 8)))  # fmt: skip
    if any(n < 0 for n in samples) or not any(samples):
        raise RecordingError(f"not a readable EDF file (samples per data record {list(samples)})", path)
    record_s = Decimal(_number(path, fixed[244:252], "data record duration", Decimal))
    if record_s <= 0:  # edfio would divide by it, or give signals no sampling rate
        raise RecordingError(f"not a readable EDF file (data record duration {record_s} s in the header is not "
                             "positive)", path)  # fmt: skip
    reserved = fixed[192:236].decode("latin-1").strip()
    return Header(records, record_s, labels, samples, header_bytes, reserved)


def _check_size(path: Path, header: Header, size: int) -> None:
    """The data must be exactly the header's records: edfio would read what is there and only warn."""
    record_bytes = 2 * sum(header.samples_per_record)
    data = size - header.header_bytes
    expected = header.records * record_bytes
    if data > expected:
        extra = data - expected
        hint = " (a BDF file's 3-byte samples?)" if data == expected * 3 // 2 else ""
        raise RecordingError(f"file has {extra} bytes more than its header's {header.records} data records of "
                             f"{record_bytes} bytes{hint}", path)  # fmt: skip
    if data < expected:
        whole, part = divmod(data, record_bytes)
        partial = f" and {part} bytes of the next" if part else ""
        raise RecordingError(f"file ends after {whole} of {header.records} data records{partial} (truncated)", path)


def record_onsets(path: Path, header: Header) -> list[Decimal]:
    """Start of each data record in seconds, from the EDF+ time-keeping annotation (the first TAL of the first
    'EDF Annotations' signal in each record); RecordingError when there is none."""
    if ANNOTATION_LABEL not in header.labels:
        raise RecordingError("EDF+D file without an 'EDF Annotations' signal: its data records have no times", path)
    if header.records == 0:
        return []
    index = header.labels.index(ANNOTATION_LABEL)
    start = 2 * sum(header.samples_per_record[:index])
    width = 2 * header.samples_per_record[index]
    records = np.memmap(path, dtype=np.uint8, mode="r", offset=header.header_bytes,
                        shape=(header.records, 2 * sum(header.samples_per_record)))  # fmt: skip
    onsets = []
    for number, record in enumerate(records[:, start : start + width]):
        match = _ONSET.match(record.tobytes())
        if match is None:
            raise RecordingError(f"EDF+D data record {number} has no time-keeping annotation", path)
        onsets.append(Decimal(match.group(1).decode()))
    return onsets


def gaps(onsets: list[Decimal], record_s: Decimal) -> list[tuple[Decimal, Decimal]]:
    """(where, how long) in seconds of every break between consecutive data records: a record that does not start
    where the one before it ends (negative lengths: records that overlap or go back in time)."""
    return [(before + record_s, after - before - record_s) for before, after in zip(onsets, onsets[1:])
            if after != before + record_s]  # fmt: skip


def _check_continuous(path: Path, header: Header) -> None:
    found = gaps(record_onsets(path, header), header.record_s)
    if found:
        listed = ", ".join(f"{length:g} s at {where:g} s" for where, length in found[:_GAPS_LISTED])
        more = f" and {len(found) - _GAPS_LISTED} more" if len(found) > _GAPS_LISTED else ""
        raise RecordingError(f"EDF+D (discontinuous) recording with {len(found)} gap(s) between data records: "
                             f"{listed}{more}; the cache needs one continuous signal", path)  # fmt: skip
