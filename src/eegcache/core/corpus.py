"""The TUSZ corpus: its layout, strict parsing of its annotations, and the split policies. Never opens an EDF.

Expected layout (TUSZ v2.0.3)::

    <root>/edf/{train,dev,eval}/<patient>/<sNNN_YYYY>/<01_tcp_ar|02_tcp_le|03_tcp_ar_a>/
        <patient>_sNNN_tNNN.edf       the recording
        <patient>_sNNN_tNNN.csv_bi    term-based (whole-head) annotation: seiz / bckg
        <patient>_sNNN_tNNN.csv       per-channel annotation: bckg / fnsz / gnsz / cpsz / ...

Older releases name the folders differently, so nothing is read from the folder names except the
official split (and, to settle duplicates, the montage folder): patient, session and token come from the
file name (``aaaaaaab_s001_t000``) and the split is the nearest folder, below ``root``, named ``train``,
``dev`` or ``eval``. ``root`` may be the TUSZ root, its ``edf/`` folder, or any folder above the split folders.

Discovery (:mod:`eegcache.core.discover`, re-exported here) judges every EDF on its own; what is wrong with one
file is a problem of that recording, which the build skips with the reason (``build.on_error=skip``) or stops
on, naming the file (``fail``): a misnamed or stray ``.edf`` (``recording copy (1).edf``), an EDF outside
``train``/``dev``/``eval``, an EDF or annotation that is not a regular file (FIFO, socket, device) or a symbolic
link leading outside the root or to such a file, and a name shared by two EDFs. Duplicates that are montage
folders of one session (TUSZ v2.0.0/v2.0.1) keep the copy in the first folder of ``data.prefer_montage_folders``
(default ``01_tcp_ar``, ``02_tcp_le``, ``03_tcp_ar_a``) and record the others as skipped; any other duplicate
builds no copy. Hidden (``.``-prefixed) folders and symbolic links to folders are not entered and are reported
(the metadata's ``unsearched``), as are folders that cannot be read; hidden files (macOS ``._x.edf`` shadows) are
not recordings. Only a root that is not a folder or cannot be read, or no EDF at all stops discovery.

Annotation files (``.csv_bi`` and ``.csv`` share the format)::

    # version = csv_v1.0.0
    # bname = aaaaaaab_s001_t000
    # duration = 240.0000 secs
    #                                   (more comment lines, e.g. "# montage_file = ..." in .csv)
    channel,start_time,stop_time,label,confidence
    TERM,0.0000,36.8100,bckg,1.0000     (.csv: channel is a bipolar pair such as FP1-F7)
    TERM,36.8100,70.2300,seiz,1.0000

Times are seconds from the start of the recording; a row covers [start_time, stop_time). An annotation must be a
regular file: it is opened without blocking and refused otherwise. It must also be smaller than
:data:`MAX_ANNOTATION_BYTES` (the largest TUSZ annotation is well under a megabyte): it is read whole, so a huge file
named ``.csv_bi`` would otherwise cost the build several times its size in memory.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from eegcache.core.discover import (  # noqa: F401 (discovery is part of the corpus's interface)
    ANNOTATION_SUFFIXES, SPLITS, Problem, RecordingRef, Survey, discover, survey,
)
from eegcache.core.store import open_regular
from eegcache.errors import AnnotationError, ConfigError, CorpusError

POLICIES = ("official_tusz", "patient_disjoint")
CSV_VERSION = "csv_v1.0.0"
COLUMNS = ("channel", "start_time", "stop_time", "label", "confidence")
BACKGROUND = "bckg"
MAX_ANNOTATION_BYTES = 64 * 2**20  # read at most this much (+1 byte) of an annotation file
END_TOLERANCE_S = 1e-3  # TUSZ rounds stop times; a last row may overshoot the header duration slightly
DEV_EXCLUDED = "official dev split is not used under patient_disjoint (dev is drawn from official train)"

_NUMBER = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"  # no nan/inf/underscores
_NUMBER_RE = re.compile(_NUMBER)
_VERSION_LINE = re.compile(r"#\s*version\s*=\s*(\S*)")
_BNAME_LINE = re.compile(r"#\s*bname\s*=\s*(\S*)")
_DURATION_LINE = re.compile(rf"#\s*duration\s*=\s*({_NUMBER})\s*secs")
_MONTAGE_CHANNEL = re.compile(r"[A-Za-z0-9]+-[A-Za-z0-9]+")
_LABEL = re.compile(r"[a-z]+")


@dataclass(frozen=True)
class Annotation:
    path: Path
    duration_s: float  # from the "# duration = ... secs" header
    seizures: tuple[tuple[float, float], ...]  # sorted, merged seizure intervals [start, stop) in seconds
    md5: str = field(default="", compare=False)  # of the bytes parsed: a build refuses a file changed since


# --- annotations -------------------------------------------------------------------------------


def _number(text: str, what: str, path: Path, line: int) -> float:
    text = text.strip()
    value = float(text) if _NUMBER_RE.fullmatch(text) else math.nan
    if not math.isfinite(value):
        raise AnnotationError(f"{what} is not a finite number: {text!r}", path, line)
    return value


def _read_lines(path: Path) -> tuple[list[str], str]:
    """The file's lines and the md5 of its bytes."""
    try:
        with open_regular(path) as handle:  # a FIFO or device would block or never end
            data = handle.read(MAX_ANNOTATION_BYTES + 1)
    except OSError as exc:
        raise AnnotationError(f"cannot read annotation file: {exc.strerror or exc}", path) from exc
    if len(data) > MAX_ANNOTATION_BYTES:
        raise AnnotationError(f"annotation file larger than {MAX_ANNOTATION_BYTES // 2**20} MiB: not a TUSZ annotation",
                              path)  # fmt: skip
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise AnnotationError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path, line) from exc
    # split on "\n" only (not str.splitlines) so line numbers match what editors show
    lines = [ln[:-1] if ln.endswith("\r") else ln for ln in text.split("\n")]
    while lines and not lines[-1].strip():
        lines.pop()
    return lines, hashlib.md5(data, usedforsecurity=False).hexdigest()


def _header(lines: list[str], path: Path) -> tuple[float, int]:
    """Check the header lines; return (duration in s, index of the first row line)."""

    def line_at(i: int, expected: str) -> str:
        if i >= len(lines):
            raise AnnotationError(f"file ends before the {expected} line", path, i + 1)
        return lines[i].strip()

    version = _VERSION_LINE.fullmatch(line_at(0, "'# version = ...'"))
    if version is None:
        raise AnnotationError(f"expected '# version = {CSV_VERSION}' as the first line", path, 1)
    if version.group(1) != CSV_VERSION:
        raise AnnotationError(f"unsupported annotation version {version.group(1)!r}; expected {CSV_VERSION}", path, 1)
    bname = _BNAME_LINE.fullmatch(line_at(1, "'# bname = ...'"))
    if bname is None:
        raise AnnotationError("expected '# bname = <patient>_sNNN_tNNN' as the second line", path, 2)
    if bname.group(1) != path.stem:
        raise AnnotationError(f"bname {bname.group(1)!r} does not match the file name {path.stem!r}", path, 2)
    duration = _DURATION_LINE.fullmatch(line_at(2, "'# duration = ... secs'"))
    if duration is None:
        raise AnnotationError("expected '# duration = <seconds> secs' as the third line", path, 3)
    duration_s = float(duration.group(1))
    if not (math.isfinite(duration_s) and duration_s > 0):
        raise AnnotationError(f"duration must be a positive number of seconds, got {duration.group(1)}", path, 3)
    i = 3
    while i < len(lines) and lines[i].lstrip().startswith("#"):
        i += 1
    columns = line_at(i, "column header")
    if tuple(f.strip() for f in columns.split(",")) != COLUMNS:
        raise AnnotationError(f"expected the column header {','.join(COLUMNS)!r}, got {columns!r}", path, i + 1)
    if i + 1 >= len(lines):
        raise AnnotationError("no annotation rows after the column header", path, i + 2)
    return duration_s, i + 1


def _row(text: str, term: bool, duration_s: float, path: Path, line: int) -> tuple[str, float, float, str]:
    """One row -> (channel, start s, stop s, label), checked."""
    fields = [f.strip() for f in text.split(",")]
    if len(fields) != len(COLUMNS):
        raise AnnotationError(f"expected {len(COLUMNS)} comma-separated fields, got {len(fields)}", path, line)
    channel, start_text, stop_text, label, confidence_text = fields
    if term and channel != "TERM":
        raise AnnotationError(f"channel must be TERM in a .csv_bi file, got {channel!r}", path, line)
    if not term and not _MONTAGE_CHANNEL.fullmatch(channel):
        raise AnnotationError(f"channel must be a montage pair such as FP1-F7, got {channel!r}", path, line)
    start = _number(start_text, "start_time", path, line)
    stop = _number(stop_text, "stop_time", path, line)
    if start < 0:
        raise AnnotationError(f"start_time is negative: {start_text}", path, line)
    if stop < start:
        raise AnnotationError(f"stop_time {stop_text} is before start_time {start_text}", path, line)
    if stop > duration_s + END_TOLERANCE_S:
        raise AnnotationError(f"stop_time {stop_text} is past the end of the recording ({duration_s:g} s)", path, line)
    if term and label not in ("seiz", BACKGROUND):
        raise AnnotationError(f"label must be seiz or bckg in a .csv_bi file, got {label!r}", path, line)
    if not _LABEL.fullmatch(label):
        raise AnnotationError(f"label must be a lowercase word such as bckg or fnsz, got {label!r}", path, line)
    confidence = _number(confidence_text, "confidence", path, line)
    if not 0 <= confidence <= 1:
        raise AnnotationError(f"confidence must be in [0, 1], got {confidence_text}", path, line)
    return channel, start, stop, label


def _merge(intervals: list[tuple[float, float]]) -> tuple[tuple[float, float], ...]:
    """Union of [start, stop) intervals; touching ones join, empty ones vanish."""
    merged: list[list[float]] = []
    for start, stop in sorted(i for i in intervals if i[1] > i[0]):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], stop)
        else:
            merged.append([start, stop])
    return tuple((a, b) for a, b in merged)


def parse_annotation(path: Path) -> Annotation:
    """Parse a TUSZ ``.csv_bi`` (term-based) or ``.csv`` (per-channel) annotation; times in seconds.

    Seizures are the union of every non-``bckg`` row (over all channels for ``.csv``), clipped to the
    header duration. Raises AnnotationError(reason, path, line) for anything malformed.
    """
    path = Path(path)
    if path.suffix not in ANNOTATION_SUFFIXES:
        raise AnnotationError(f"unknown annotation suffix {path.suffix!r}; expected .csv_bi or .csv", path)
    term = path.suffix == ".csv_bi"
    lines, md5 = _read_lines(path)
    if not lines:
        raise AnnotationError("empty annotation file", path, 1)
    duration_s, first = _header(lines, path)
    by_channel: dict[str, list[tuple[float, float, int]]] = defaultdict(list)
    seizures: list[tuple[float, float]] = []
    for i in range(first, len(lines)):
        if not lines[i].strip():
            raise AnnotationError("blank line between annotation rows", path, i + 1)
        channel, start, stop, label = _row(lines[i], term, duration_s, path, i + 1)
        by_channel[channel].append((start, stop, i + 1))
        if label != BACKGROUND:
            seizures.append((min(start, duration_s), min(stop, duration_s)))
    for rows in by_channel.values():
        rows.sort()
        for (_, prev_stop, prev_line), (start, _, line) in zip(rows, rows[1:]):
            if start < prev_stop:
                first_line, second_line = sorted((prev_line, line))
                raise AnnotationError(f"row overlaps the row on line {first_line}", path, second_line)
    return Annotation(path, duration_s, _merge(seizures), md5)


# --- splits ------------------------------------------------------------------------------------


def _dev_fraction(seed: int, patient: str) -> float:
    """A stable number in [0, 1) per (seed, patient); adding patients never moves existing ones."""
    digest = hashlib.sha256(f"{seed}:{patient}".encode()).digest()
    return (int.from_bytes(digest[:8], "big") >> 11) / 2.0**53


def assign_splits(
    refs: Sequence[RecordingRef], policy: str, dev_ratio: float, seed: int
) -> tuple[list[tuple[RecordingRef, str]], list[tuple[RecordingRef, str]]]:
    """-> (assigned: [(ref, split)], excluded: [(ref, reason)]), both sorted by relpath.

    ``official_tusz`` keeps the folders' splits. ``patient_disjoint`` draws dev from the official train
    patients (a patient goes to dev when its stable hash with ``seed`` is below ``dev_ratio``), keeps
    eval and excludes official dev. Either way a patient in two splits raises CorpusError.
    """
    if policy not in POLICIES:
        raise ConfigError(f"unknown split policy {policy!r}; expected one of {', '.join(POLICIES)}")
    if not (isinstance(dev_ratio, int | float) and 0 < dev_ratio < 1):
        raise ConfigError(f"dev_ratio must be a number strictly between 0 and 1, got {dev_ratio!r}")
    assigned: list[tuple[RecordingRef, str]] = []
    excluded: list[tuple[RecordingRef, str]] = []
    for ref in sorted(refs, key=lambda r: r.relpath):
        if policy == "official_tusz" or ref.official_split == "eval":
            assigned.append((ref, ref.official_split))
        elif ref.official_split == "dev":
            excluded.append((ref, DEV_EXCLUDED))
        else:
            assigned.append((ref, "dev" if _dev_fraction(seed, ref.patient) < dev_ratio else "train"))
    check_patient_disjoint(assigned)
    return assigned, excluded


def check_patient_disjoint(assigned: Sequence[tuple[RecordingRef, str]]) -> None:
    """Raise CorpusError naming the patient, the splits and some files of each when a patient is in two splits."""
    files: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for ref, split in assigned:
        files[ref.patient][split].append(ref.relpath)
    for patient in sorted(files):
        by_split = files[patient]
        if len(by_split) > 1:
            order = sorted(by_split, key=lambda s: (SPLITS.index(s) if s in SPLITS else len(SPLITS), s))
            where = "; ".join(_some_files(split, sorted(by_split[split])) for split in order)
            raise CorpusError(
                f"patient {patient} appears in {' and '.join(order)} ({where}); splits must be patient-disjoint"
            )


def _some_files(split: str, relpaths: list[str], shown: int = 3) -> str:
    more = f" and {len(relpaths) - shown} more" if len(relpaths) > shown else ""
    return f"{split}: {', '.join(relpaths[:shown])}{more}"
