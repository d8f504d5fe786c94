"""Properties of the two readers of untrusted input: any bytes give a valid result or the project's own error.

- ``corpus.parse_annotation``: arbitrary text or bytes, and near-valid files (a valid header, rows mutated with odd
  numbers, swapped, missing or extra fields, blank and unicode lines, repeats). An accepted file must hold only rows
  the format allows, and its seizures must be exactly the union of its non-``bckg`` rows (no row silently dropped).
- ``edf.read_eeg``: random bytes, truncations of a real EDF (written with edfio) at any offset, single-byte
  corruptions of its header and header fields rewritten with odd numbers. An accepted file gives finite samples, a
  positive rate and duration that agree with the sample count, and at least one electrode.

Any other exception type fails the property, as does a slow example (``deadline``): readers must not hang.
Files go to one temporary folder per module, rewritten for each example.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from edfio import Edf, EdfSignal
from hypothesis import event, given, settings
from hypothesis import strategies as st

from eegcache.core import corpus, edf
from eegcache.core.montage import ELECTRODES
from eegcache.errors import AnnotationError, EegcacheError, RecordingError

BNAME = "aaaaaaab_s001_t000"
DEADLINE_MS = 2000  # each example takes a few ms; anything near this is a hang
ANNOTATION_EXAMPLES = 300
EDF_EXAMPLES = 200


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="eegcache-properties-") as name:
        yield Path(name)


# --- annotation parser ---------------------------------------------------------------------------------------

NUMBER_TEXT = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(-1e3, 1e3).map(lambda x: f"{x:.4f}"),
    st.integers(-10, 10**6).map(str),
    st.sampled_from(
        [
            "",
            " ",
            "nan",
            "NaN",
            "inf",
            "-inf",
            "1e999",
            "-0",
            "+1",
            ".5",
            "5.",
            "1e-3",
            "1_0",
            "0x10",
            "\uff15",
            "\u0665",
            "1,5",
            "\u00a0 1",
            "٣.0",
            "1e",
            "e1",
            "--1",
            "0.0O00",
        ]
    ),
)
LABEL = st.sampled_from(["seiz", "bckg", "fnsz", "gnsz", "SEIZ", "", "seiz ", "s\u00e9iz", "bckg,1"])
CHANNEL = st.sampled_from(["TERM", "TERM", "TERM", "FP1-F7", "F7-T3", "term", "", "FP1"])
SUFFIX = st.sampled_from([".csv_bi", ".csv"])
JUNK_LINE = st.one_of(
    st.just(""),
    st.just("#"),
    st.just(",".join(corpus.COLUMNS)),
    st.text(max_size=30),
    st.lists(NUMBER_TEXT, max_size=6).map(",".join),
)


def _float_or_none(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


MUTATIONS = ("number", "shift", "label", "channel", "swap", "drop", "extra", "repeat", "junk line")


@st.composite
def near_valid_annotation(draw) -> tuple[str, str]:
    """-> (suffix, text): a valid header and rows partitioning the recording on 1-2 channels (``TERM`` in a
    ``.csv_bi``, montage pairs in a ``.csv``), some gaps, then 0-3 mutations of rows (about a quarter untouched)."""
    suffix = draw(SUFFIX)
    duration = draw(st.sampled_from(["240.0000", "20", "0.5", "1e3", "3e300"]))
    head = [
        "# version = csv_v1.0.0",
        f"# bname = {BNAME}",
        f"# duration = {duration} secs",
        "#",
        ",".join(corpus.COLUMNS),
    ]
    ticks = round(min(float(duration), 240.0) * 100)
    channels = ["TERM"] if suffix == ".csv_bi" else draw(st.sampled_from([["FP1-F7"], ["FP1-F7", "T3-T5"]]))
    labels = ["seiz", "bckg"] if suffix == ".csv_bi" else ["bckg", "fnsz", "gnsz"]
    rows = []
    for channel in channels:
        cuts = sorted(draw(st.sets(st.integers(0, ticks), min_size=2, max_size=6)) | {0, ticks})
        rows += [
            [channel, f"{a / 100:.4f}", f"{b / 100:.4f}", draw(st.sampled_from(labels)), "1.0000"]
            for a, b in zip(cuts, cuts[1:])
            if draw(st.integers(0, 5))
        ]  # about one piece in 6 is a gap
    rows = rows or [[channels[0], "0.0000", f"{ticks / 100:.4f}", "bckg", "1.0000"]]
    for _ in range(draw(st.sampled_from([0, 1, 1, 2, 3]))):
        whole = [k for k, r in enumerate(rows) if len(r) == len(corpus.COLUMNS)]  # rows not yet cut or lengthened
        if not whole:
            break
        i = draw(st.sampled_from(whole))
        kind = draw(st.sampled_from(MUTATIONS))
        row = list(rows[i])
        if kind == "number":
            row[draw(st.sampled_from([1, 2, 4]))] = draw(NUMBER_TEXT)
        elif kind == "shift" and _float_or_none(row[k := draw(st.sampled_from([1, 2]))]) is not None:
            # may open a gap, overlap a neighbour, reverse the row or pass either end
            step = draw(st.sampled_from([-30, -0.5, -0.0001, 0.0001, 0.5, 30]))
            row[k] = f"{float(row[k]) + step:.4f}"
        elif kind == "label":
            row[3] = draw(LABEL)
        elif kind == "channel":
            row[0] = draw(CHANNEL)
        elif kind == "swap":
            a, b = draw(st.permutations(range(5)))[:2]
            row[a], row[b] = row[b], row[a]
        elif kind == "drop":
            del row[draw(st.integers(0, 4))]
        elif kind == "extra":
            row.insert(draw(st.integers(0, 5)), draw(NUMBER_TEXT))
        if kind == "repeat":
            rows.insert(i, row)
        elif kind == "junk line":
            rows.insert(i, [draw(JUNK_LINE)])
        else:
            rows[i] = row
    body = "\n".join(head + [",".join(r) for r in draw(st.permutations(rows))])
    return suffix, body + draw(st.sampled_from(["", "\n", "\n\n"]))


def expected_seizures(text: str, suffix: str) -> tuple[tuple[float, float], ...]:
    """Independent reading of an accepted file: check each row is one the format allows, then the union of the
    non-bckg rows, clipped to the header duration (intervals as sorted disjoint pairs)."""
    lines = text.lstrip("\ufeff").replace("\r\n", "\n").rstrip().split("\n")
    duration = float(lines[2].split("=")[1].split()[0])
    first = next(i for i, line in enumerate(lines) if not line.lstrip().startswith("#")) + 1
    spans, by_channel = [], {}
    for line in lines[first:]:
        channel, start, stop, label, confidence = (f.strip() for f in line.split(","))
        start_s, stop_s, conf = float(start), float(stop), float(confidence)
        assert all(c in "0123456789.eE+-" for c in start + stop + confidence), line
        assert math.isfinite(start_s + stop_s + conf) and 0 <= start_s <= stop_s <= duration + corpus.END_TOLERANCE_S
        assert 0 <= conf <= 1 and label.isascii() and label.isalpha() and label.islower(), line
        if suffix == ".csv_bi":
            assert channel == "TERM" and label in ("seiz", "bckg"), line
        else:
            assert channel.count("-") == 1 and channel.replace("-", "").isalnum() and channel.isascii(), line
        by_channel.setdefault(channel, []).append((start_s, stop_s))
        if label != "bckg" and min(stop_s, duration) > min(start_s, duration):
            spans.append([min(start_s, duration), min(stop_s, duration)])
    for rows in by_channel.values():  # rows of one channel never overlap
        rows.sort()
        assert all(b[0] >= a[1] for a, b in zip(rows, rows[1:])), rows
    merged: list[list[float]] = []
    for start_s, stop_s in sorted(spans):
        if merged and start_s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], stop_s)
        else:
            merged.append([start_s, stop_s])
    return tuple((a, b) for a, b in merged)


def check_annotation(path: Path, content: str | bytes) -> None:
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    try:
        ann = corpus.parse_annotation(path)
    except AnnotationError as exc:
        assert exc.path == str(path) and str(exc).startswith(f"{path}"), exc
        event("refused")
        return
    event("accepted")
    assert math.isfinite(ann.duration_s) and ann.duration_s > 0 and ann.path == path
    previous_stop = -math.inf
    for start, stop in ann.seizures:  # sorted, disjoint, not touching, inside the recording
        assert previous_stop < start and 0 <= start < stop <= ann.duration_s, ann.seizures
        previous_stop = stop
    text = content if isinstance(content, str) else content.decode("utf-8-sig")
    assert ann.seizures == expected_seizures(text, path.suffix)


@settings(max_examples=ANNOTATION_EXAMPLES, deadline=DEADLINE_MS)
@given(content=st.one_of(st.text(max_size=400), st.binary(max_size=400)), suffix=SUFFIX)
def test_annotation_any_content(folder, content, suffix):
    check_annotation(folder / f"{BNAME}{suffix}", content)


@settings(max_examples=ANNOTATION_EXAMPLES, deadline=DEADLINE_MS)
@given(annotation=near_valid_annotation(), encoding=st.sampled_from(["utf-8", "utf-8-sig", "crlf"]))
def test_annotation_near_valid(folder, annotation, encoding):
    suffix, content = annotation
    if encoding == "crlf":
        content = content.replace("\n", "\r\n")
    data = content.encode("utf-8-sig" if encoding == "utf-8-sig" else "utf-8")
    check_annotation(folder / f"{BNAME}{suffix}", data)


# --- EDF reader front ----------------------------------------------------------------------------------------

SIGNALS = (("EEG FP1-REF", 256), ("EEG F7-REF", 256), ("EEG EKG1-REF", 256), ("IBI", 1))
HEADER_BYTES = 256 * (1 + len(SIGNALS))
# Numeric header fields (offset, width) per the EDF spec: record count and duration, then per-signal fields.
# Where each per-signal field starts after the 256-byte fixed header, in units of the signal count (field widths
# before it, summed): every signal's value of that field follows, 8 bytes each.
_PER_SIGNAL = {
    "physical minimum": 104,
    "physical maximum": 112,
    "digital minimum": 120,
    "digital maximum": 128,
    "samples per record": 216,
}
NUMERIC_FIELDS = [(236, 8), (244, 8), (252, 4)] + [
    (256 + offset * len(SIGNALS) + 8 * i, 8) for offset in _PER_SIGNAL.values() for i in range(len(SIGNALS))
]


@pytest.fixture(scope="module")
def real_edf(folder) -> bytes:
    """A small real EDF: two EEG channels, an EKG and a 1 Hz channel, 4 one-second records."""
    signals = [
        EdfSignal(
            80 * np.sin(np.arange(4 * rate) * 0.3 + k),
            rate,
            label=label,
            physical_dimension="uV",
            physical_range=(-500, 500),
        )
        for k, (label, rate) in enumerate(SIGNALS)
    ]
    Edf(signals).write(folder / "real.edf")
    data = (folder / "real.edf").read_bytes()
    assert len(data) == HEADER_BYTES + 4 * 2 * (3 * 256 + 1)
    return data


def check_edf(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    try:
        sig = edf.read_eeg(path)
    except RecordingError as exc:
        assert exc.path == str(path) and str(exc).startswith(f"{path}: "), exc
        event(f"refused: {exc.reason.split(' (')[0].split(':')[0]}")
        return
    event("accepted")
    assert sig.electrodes and set(sig.electrodes) <= set(ELECTRODES)
    assert math.isfinite(sig.rate) and sig.rate > 0
    assert math.isfinite(sig.duration_s) and sig.duration_s > 0 and sig.n_samples > 0
    assert math.isclose(sig.n_samples, sig.rate * sig.duration_s, rel_tol=1e-6)
    for x in sig.electrodes.values():
        assert x.shape == (sig.n_samples,) and x.dtype == np.float64 and np.isfinite(x).all()


@settings(max_examples=EDF_EXAMPLES, deadline=DEADLINE_MS)
@given(data=st.one_of(st.binary(max_size=3000), st.binary(max_size=300).map(lambda b: b"0       " + b)))  # EDF "0"
def test_edf_random_bytes(folder, data):
    check_edf(folder / "random.edf", data)


@settings(max_examples=EDF_EXAMPLES, deadline=DEADLINE_MS)
@given(cut=st.integers(0, 10**6))
def test_edf_truncated_anywhere(folder, real_edf, cut):
    check_edf(folder / "cut.edf", real_edf[: cut % len(real_edf)])


@settings(max_examples=EDF_EXAMPLES, deadline=DEADLINE_MS)
@given(position=st.integers(0, HEADER_BYTES - 1), value=st.integers(0, 255))
def test_edf_header_byte_corrupted(folder, real_edf, position, value):
    data = bytearray(real_edf)
    data[position] = value
    check_edf(folder / "byte.edf", bytes(data))


@settings(max_examples=EDF_EXAMPLES, deadline=DEADLINE_MS)
@given(field=st.sampled_from(NUMERIC_FIELDS), text=NUMBER_TEXT)
def test_edf_header_number_rewritten(folder, real_edf, field, text):
    offset, width = field
    data = bytearray(real_edf)
    data[offset : offset + width] = text.encode("utf-8")[:width].ljust(width)
    check_edf(folder / "field.edf", bytes(data))


def test_the_damaged_edfs_start_from_one_read_whole(folder, real_edf):
    """Against vacuous properties: the file the truncations and corruptions start from is itself accepted."""
    (folder / "whole.edf").write_bytes(real_edf)
    assert sorted(edf.read_eeg(folder / "whole.edf").electrodes) == ["F7", "FP1"]
    with pytest.raises(EegcacheError):
        edf.read_eeg(folder / "missing.edf")
