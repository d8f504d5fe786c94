"""The bad-input matrix: one damaged recording (or corpus) per case, each run through the real build twice.

``build.on_error=fail``: the build stops with the case's own EegcacheError subclass, whose message names the
offending file and says why, and leaves no metadata. ``build.on_error=skip``: the build completes, the damaged
recording is listed in ``skipped`` with that reason, every other recording is built, nothing else is missing
(skipped + built == discovered) and the cache passes deep verification. A corpus case (a patient in two splits)
stops the build under both values: it is not one recording's fault.

"Shorter than one window", for the build, means too short for the zero-phase filters (34 samples at 200 Hz
after resampling; see eegcache.core.signal): training windows are chosen at read time, so a recording shorter than a
window but longer than that is built, and the dataset leaves it out (last test).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from edfio import Bdf, BdfSignal, Edf, EdfAnnotation, EdfSignal

from eegcache.builder.run import run_build
from eegcache.core import corpus, store
from eegcache.core.montage import electrode_of
from eegcache.errors import AnnotationError, CorpusError, EegcacheError, RecordingError
from eegcache.train.dataset import WindowDataset
from eegcache.versions.verify import verify
from tests.conftest import make_config
from tests.integration.projects import record
from tests.unit.core.test_edf import as_edf_plus_d

pytestmark = pytest.mark.integration


def target(root: Path) -> corpus.RecordingRef:
    """The recording each case damages: the first of the official train split."""
    return next(r for r in corpus.discover(root) if r.official_split == "train")


def eeg_edf(path: Path, channels: list[tuple[str, float]], seconds: float, record_s: float = 1.0) -> Path:
    """A real EDF (edfio) of ``seconds`` s: a 10 Hz, 50 µV tone on each (label, rate) channel."""
    signals = [
        EdfSignal(
            50 * np.sin(2 * np.pi * 10 * np.arange(round(seconds * rate)) / rate),
            rate,
            label=label,
            physical_dimension="uV",
            physical_range=(-500, 500),
        )
        for label, rate in channels
    ]
    Edf(signals, data_record_duration=record_s).write(path)
    return path


def duration_of(ref: corpus.RecordingRef) -> float:
    return corpus.parse_annotation(ref.annotation).duration_s


def edited_rows(ref: corpus.RecordingRef, edit: Callable[[list[str], float], list[str]]) -> Path:
    """Rewrite the rows of the recording's .csv_bi (the annotation the build reads) with ``edit(rows, duration)``."""
    lines = ref.annotation.read_text().splitlines()
    first = lines.index(",".join(corpus.COLUMNS)) + 1
    ref.annotation.write_text("\n".join(lines[:first] + edit(lines[first:], duration_of(ref))) + "\n")
    return ref.annotation


def fields(row: str, **changes: str) -> str:
    values = dict(zip(corpus.COLUMNS, row.split(",")))
    return ",".join({**values, **changes}.values())


# --- damage: each takes the corpus root, damages it and returns the offending file ---------------------------


def truncated_in_data(root: Path) -> Path:
    edf = target(root).edf
    edf.write_bytes(edf.read_bytes()[: edf.stat().st_size // 2])
    return edf


def truncated_in_header(root: Path) -> Path:
    edf = target(root).edf
    edf.write_bytes(edf.read_bytes()[:200])
    return edf


def random_bytes(root: Path) -> Path:
    edf = target(root).edf
    edf.write_bytes(np.random.default_rng(3).bytes(edf.stat().st_size))
    return edf


def empty_edf(root: Path) -> Path:
    edf = target(root).edf
    edf.write_bytes(b"")
    return edf


def broken_link(path: Path) -> Path:
    """``path`` replaced by a symbolic link to nowhere (e.g. a corpus of links into a cache that lost the file)."""
    path.unlink()
    path.symlink_to(path.parent / "nowhere")
    return path


def edf_broken_link(root: Path) -> Path:
    return broken_link(target(root).edf)


def annotation_broken_link(root: Path) -> Path:
    return broken_link(target(root).annotation)


def no_eeg_channels(root: Path) -> Path:
    ref = target(root)
    return eeg_edf(ref.edf, [("EEG EKG1-REF", 256), ("PHOTIC-REF", 256), ("IBI", 1)], duration_of(ref))


def rate_below_target(root: Path) -> Path:
    ref = target(root)
    return eeg_edf(ref.edf, [("EEG FP1-REF", 100), ("EEG F7-REF", 100)], duration_of(ref))


def mixed_rates(root: Path) -> Path:
    ref = target(root)
    return eeg_edf(ref.edf, [("EEG FP1-REF", 256), ("EEG FP2-REF", 512)], duration_of(ref))


def duplicated_electrode(root: Path) -> Path:
    ref = target(root)
    return eeg_edf(ref.edf, [("EEG FP1-REF", 256), ("EEG FP1-LE", 256)], duration_of(ref))


def first_signal_field(root: Path, before: int, value: bytes) -> Path:
    """The target's EDF with the 8-byte field of signal 0 that follows ``before`` bytes per signal set to ``value``."""
    edf = target(root).edf
    data = bytearray(edf.read_bytes())
    offset = 256 + int(data[252:256]) * before
    data[offset : offset + 8] = value.ljust(8)
    edf.write_bytes(bytes(data))
    return edf


def nan_physical_range(root: Path) -> Path:
    """edfio reads "nan" as the first signal's physical minimum and returns NaN samples."""
    return first_signal_field(root, 16 + 80 + 8, b"nan")  # physical minimum


def huge_physical_range(root: Path) -> Path:
    """A physical maximum of 1e308 µV: finite samples of ~1e303 µV whose mean and variance overflow (NaN, silently
    before)."""
    return first_signal_field(root, 16 + 80 + 8 + 8, b"1e308")  # physical maximum


def header_field(root: Path, start: int, text: bytes) -> Path:
    """The target EDF with the main-header field at ``start`` overwritten by ``text`` (space-padded to 8 bytes)."""
    edf = target(root).edf
    data = bytearray(edf.read_bytes())
    data[start : start + 8] = text.ljust(8)
    edf.write_bytes(bytes(data))
    return edf


def record_duration_zero(root: Path) -> Path:
    """0 s per data record: edfio failed with "UnboundLocalError: ... 'sampling_frequency'" before."""
    return header_field(root, 244, b"0")


def bdf_named_edf(root: Path) -> Path:
    """A BDF (24-bit samples, version byte 0xFF 'BIOSEMI') written by edfio under the EDF's name, same length."""
    ref = target(root)
    n = round(duration_of(ref) * 256)
    Bdf(
        [
            BdfSignal(
                50 * np.sin(np.arange(n) / 4), 256, label=label, physical_dimension="uV", physical_range=(-500, 500)
            )
            for label in ("EEG FP1-REF", "EEG F7-REF")
        ]
    ).write(ref.edf)
    return ref.edf


def record_count_unknown(root: Path) -> Path:
    """-1 in the header's number of data records: what a recorder writes until it closes the file."""
    return header_field(root, 236, b"-1")


def longer_than_its_header(root: Path) -> Path:
    edf = target(root).edf
    edf.write_bytes(edf.read_bytes() + b"\0" * 1000)
    return edf


def edf_plus_d_with_a_gap(root: Path) -> Path:
    """An EDF+D file whose data records from 30 s on start 10 s late (edfio writes EDF+C, then patched)."""
    ref = target(root)
    seconds = round(duration_of(ref))
    signals = [
        EdfSignal(50 * np.sin(np.arange(seconds * 256) / 4), 256, label=label, physical_range=(-500, 500))
        for label in ("EEG FP1-REF", "EEG F7-REF")
    ]
    Edf(signals, annotations=[EdfAnnotation(1.0, None, "start")]).write(ref.edf)
    return as_edf_plus_d(ref.edf, 30, 10)


def shorter_than_the_filters(root: Path) -> Path:
    """0.1 s at 250 Hz (0.1 s data records): 20 samples at 200 Hz, fewer than the filters' 34; annotation to match."""
    ref = target(root)
    ref.annotation.write_text(
        f"# version = csv_v1.0.0\n# bname = {ref.bname}\n# duration = 0.1000 secs\n#\n"
        f"{','.join(corpus.COLUMNS)}\nTERM,0.0000,0.1000,bckg,1.0000\n"
    )
    return eeg_edf(ref.edf, [("EEG FP1-REF", 250), ("EEG F7-REF", 250)], 0.1, record_s=0.1)


def length_disagrees(root: Path) -> Path:
    ref = target(root)
    text = ref.annotation.read_text()
    old = f"# duration = {duration_of(ref):.4f} secs"
    assert old in text
    ref.annotation.write_text(text.replace(old, f"# duration = {duration_of(ref) + 10:.4f} secs"))
    return ref.edf


def bad_header(root: Path) -> Path:
    ann = target(root).annotation
    ann.write_text(ann.read_text().replace("# version = csv_v1.0.0", "# version = csv_v2.0.0"))
    return ann


def not_utf8(root: Path) -> Path:
    ann = target(root).annotation
    ann.write_bytes(ann.read_bytes().replace(b",bckg,", b",bckg\xe9,", 1))
    return ann


def bad_number(root: Path) -> Path:
    return edited_rows(target(root), lambda rows, _: [fields(rows[0], start_time="0.0O00"), *rows[1:]])


def stop_before_start(root: Path) -> Path:
    def edit(rows: list[str], _: float) -> list[str]:
        start = float(rows[-1].split(",")[1])
        return [*rows[:-1], fields(rows[-1], stop_time=f"{start - 1:.4f}")]

    return edited_rows(target(root), edit)


def row_past_the_end(root: Path) -> Path:
    return edited_rows(target(root), lambda rows, d: [*rows[:-1], fields(rows[-1], stop_time=f"{d + 5:.4f}")])


def overlapping_rows(root: Path) -> Path:
    return edited_rows(target(root), lambda rows, _: [*rows, "TERM,0.0000,1.0000,seiz,1.0000"])


def huge_annotation(root: Path) -> Path:
    """An annotation file of 2 GiB (sparse: its header, then zero bytes): read whole, it took over 6 GB of memory."""
    ann = target(root).annotation
    with open(ann, "r+b") as handle:
        handle.truncate(2 * 2**30)
    return ann


def missing_annotation(root: Path) -> Path:
    ref = target(root)
    for suffix in corpus.ANNOTATION_SUFFIXES:
        ref.edf.with_suffix(suffix).unlink()
    return ref.edf


def patient_in_two_splits(root: Path) -> Path:
    """One recording of the target's patient also under eval, in a session of its own (new names, so the
    duplicate-name check does not fire first)."""
    ref = target(root)
    bname = f"{ref.patient}_s099_t000"
    folder = root / "edf" / "eval" / ref.patient / "s099_2015" / "01_tcp_ar"
    folder.mkdir(parents=True)
    shutil.copy(ref.edf, folder / f"{bname}.edf")
    for suffix in corpus.ANNOTATION_SUFFIXES:
        text = ref.edf.with_suffix(suffix).read_text()
        (folder / f"{bname}{suffix}").write_text(text.replace(f"# bname = {ref.bname}", f"# bname = {bname}"))
    return folder / f"{bname}.edf"


# --- the matrix ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    damage: Callable[[Path], Path]
    error: type[EegcacheError]
    words: tuple[str, ...]  # each must appear in the message (fail) and the skipped reason (skip)
    corpus_level: bool = False  # stops the build whatever build.on_error says


CASES = {
    # EDF
    "truncated EDF (in the data)": Case(
        truncated_in_data, RecordingError, ("file ends after", "data records", "(truncated)")
    ),
    "BDF named .edf": Case(bdf_named_edf, RecordingError, ("BDF file (24-bit samples", "not EDF")),
    "record count -1": Case(
        record_count_unknown,
        RecordingError,
        ("header gives -1 data records (unknown, written by a recorder that did not finish)",),
    ),
    "EDF longer than its header": Case(
        longer_than_its_header, RecordingError, ("file has 1000 bytes more than its header's",)
    ),
    "EDF+D with a gap": Case(
        edf_plus_d_with_a_gap,
        RecordingError,
        ("EDF+D (discontinuous) recording with 1 gap(s) between data records: 10 s at 30 s",),
    ),
    "truncated EDF (in the header)": Case(truncated_in_header, RecordingError, ("not a readable EDF file",)),
    "random bytes named .edf": Case(random_bytes, RecordingError, ("not a readable EDF file",)),
    "empty .edf": Case(empty_edf, RecordingError, ("not a readable EDF file",)),
    "EDF is a broken link": Case(
        edf_broken_link, RecordingError, ("cannot read the EDF file", "No such file or directory")
    ),
    "no EEG channels": Case(no_eeg_channels, RecordingError, ("no EEG channels",)),
    "EEG rate below the target": Case(
        rate_below_target, RecordingError, ("unsupported sampling rate 100", "below the target 200 Hz")
    ),
    "mixed EEG rates": Case(
        mixed_rates, RecordingError, ("mixed sampling rates among EEG channels", "FP1 256 Hz", "FP2 512 Hz")
    ),
    "duplicated electrode": Case(duplicated_electrode, RecordingError, ("duplicated EEG channels: FP1",)),
    "nan physical range": Case(nan_physical_range, RecordingError, ("non-finite samples in EEG channels",)),
    "huge physical range": Case(
        huge_physical_range, RecordingError, ("non-finite values after preprocessing channel(s) FP1", "too large")
    ),
    "record duration 0": Case(
        record_duration_zero, RecordingError, ("data record duration 0 s in the header is not positive",)
    ),
    "shorter than the filters": Case(
        shorter_than_the_filters, RecordingError, ("recording too short", "0.1 s", "need at least 34 samples")
    ),
    "EDF shorter than its annotation": Case(length_disagrees, RecordingError, ("annotation says", "the EDF holds")),
    # annotation
    "annotation: bad header": Case(bad_header, AnnotationError, ("unsupported annotation version", "csv_v2.0.0")),
    "annotation: not UTF-8": Case(not_utf8, AnnotationError, ("not UTF-8",)),
    "annotation: bad number": Case(bad_number, AnnotationError, ("start_time is not a finite number", "0.0O00")),
    "annotation: stop before start": Case(stop_before_start, AnnotationError, ("is before start_time",)),
    "annotation: row past the end": Case(row_past_the_end, AnnotationError, ("past the end of the recording",)),
    "annotation: overlapping rows": Case(overlapping_rows, AnnotationError, ("row overlaps the row on line 6",)),
    "annotation: a broken link": Case(
        annotation_broken_link, AnnotationError, ("cannot read annotation file", "No such file or directory")
    ),
    "annotation: 2 GiB": Case(huge_annotation, AnnotationError, ("annotation file larger than 64 MiB",)),
    "annotation: missing": Case(missing_annotation, CorpusError, ("no annotation file (.csv_bi or .csv)",)),
    # corpus
    "patient in two splits": Case(
        patient_in_two_splits,
        CorpusError,
        ("appears in train and eval", "splits must be patient-disjoint"),
        corpus_level=True,
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_fail_stops_with_a_clear_error(case, base_config, corpus_copy, tmp_path):
    offending = case.damage(corpus_copy)
    cfg = make_config(base_config, corpus_copy, tmp_path / "work", build={"on_error": "fail", "workers": 1})
    with pytest.raises(EegcacheError) as err:
        run_build(cfg)
    assert type(err.value) is case.error, err.value
    message = str(err.value)
    assert offending.name in message, message
    for word in case.words:
        assert word in message, message
    assert not (Path(cfg.build.out_dir) / store.METADATA_NAME).exists()
    record("bad input, on_error=fail", case.damage.__name__.replace("_", " "), True, True)


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_skip_lists_the_recording_and_builds_the_rest(case, base_config, corpus_copy, tmp_path):
    victim = target(corpus_copy)
    offending = case.damage(corpus_copy)
    discovered = corpus.discover(corpus_copy)
    cfg = make_config(base_config, corpus_copy, tmp_path / "work", build={"on_error": "skip", "workers": 1})
    if case.corpus_level:
        with pytest.raises(case.error) as err:
            run_build(cfg)
        assert offending.name in str(err.value) and all(w in str(err.value) for w in case.words), err.value
        record("bad input, on_error=skip", case.damage.__name__.replace("_", " "), True, True)
        return
    meta = run_build(cfg).metadata
    skipped = {s["file"]: s["reason"] for s in meta["skipped"]}
    assert list(skipped) == [victim.relpath]
    reason = skipped[victim.relpath]
    assert reason.startswith(f"{offending.name}") and str(corpus_copy) not in reason, reason
    for word in case.words:
        assert word in reason, reason
    built = {f"{r.official_split}/{r.bname}{store.SUFFIX}" for r in discovered if r.relpath != victim.relpath}
    assert set(meta["files"]) == built
    assert len(meta["files"]) + len(meta["skipped"]) == len(discovered) == meta["raw_recordings"]
    assert verify(Path(cfg.build.out_dir), deep=True).ok
    record("bad input, on_error=skip", case.damage.__name__.replace("_", " "), True, True)


def test_a_recording_shorter_than_a_window_is_built_and_left_out_by_the_dataset(base_config, corpus_copy, tmp_path):
    """1 s is far shorter than any training window but long enough to filter: built, then no window of it is read."""
    ref = target(corpus_copy)
    ref.annotation.write_text(
        f"# version = csv_v1.0.0\n# bname = {ref.bname}\n# duration = 1.0000 secs\n#\n"
        f"{','.join(corpus.COLUMNS)}\nTERM,0.0000,1.0000,bckg,1.0000\n"
    )
    eeg_edf(ref.edf, [("EEG FP1-REF", 250), ("EEG F7-REF", 250)], 1.0)
    summary = run_build(make_config(base_config, corpus_copy, tmp_path / "work", build={"workers": 1}))
    entry = summary.metadata["files"][f"train/{ref.bname}{store.SUFFIX}"]
    assert entry["samples"] == 200 and summary.metadata["skipped"] == []
    dataset = WindowDataset(summary.cache_dir, "train", window_s=10.0, stride_s=10.0)
    assert dataset.short_recordings == 1 and f"train/{ref.bname}{store.SUFFIX}" in dataset.files


REBUILD_DAMAGE = {
    "broken link": (broken_link, "cannot read the EDF file"),
    "random bytes": (lambda edf: edf.write_bytes(np.random.default_rng(4).bytes(5000)), "not a readable EDF file"),
}


@pytest.mark.parametrize("on_error", ["fail", "skip"])
@pytest.mark.parametrize(("damage", "words"), REBUILD_DAMAGE.values(), ids=REBUILD_DAMAGE.keys())
def test_a_recording_damaged_since_the_last_build(damage, words, on_error, base_config, corpus_copy, tmp_path):
    """The rebuild must not keep the old output of a recording whose EDF it can no longer use: it fails naming
    the file, or skips the recording and deletes that output (the cache then still verifies)."""
    cfg = make_config(base_config, corpus_copy, tmp_path / "work", build={"on_error": on_error, "workers": 1})
    first = run_build(cfg)
    ref = target(corpus_copy)
    rel = f"train/{ref.bname}{store.SUFFIX}"
    assert rel in first.metadata["files"]
    damage(ref.edf)
    if on_error == "fail":
        with pytest.raises(RecordingError, match=rf"{ref.bname}\.edf: {words}"):
            run_build(cfg)
        return
    second = run_build(cfg)
    assert (second.processed, second.reused) == (1, len(first.metadata["files"]) - 1)
    assert [s["file"] for s in second.metadata["skipped"]] == [ref.relpath]
    assert rel not in second.metadata["files"] and not (second.cache_dir / rel).exists()
    assert verify(second.cache_dir, deep=True).ok


def without_calibration(edf: Path, electrode: str) -> Path:
    """``edf`` with the physical maximum of ``electrode`` set to its minimum: edfio returns the raw integers of such
    a channel as if they were µV (with a bare UserWarning)."""
    data = bytearray(edf.read_bytes())
    count = int(data[252:256])
    labels = [data[256 + 16 * i : 256 + 16 * (i + 1)].decode().strip() for i in range(count)]
    index = [electrode_of(label) for label in labels].index(electrode)
    low, high = 256 + 104 * count + 8 * index, 256 + 112 * count + 8 * index
    data[high : high + 8] = data[low : low + 8]
    edf.write_bytes(bytes(data))
    return edf


@pytest.mark.filterwarnings("error")  # the build's workers inherit it: a bare warning would fail the build
def test_an_electrode_without_calibration_is_built_as_missing_and_recorded(base_config, corpus_copy, tmp_path):
    """Treated as an absent electrode (preprocess.missing_channels=zero): zero-filled and listed in the entry's
    ``zero_filled``; the rest of the recording is built from its calibrated channels."""
    ref = target(corpus_copy)
    without_calibration(ref.edf, "CZ")
    summary = run_build(make_config(base_config, corpus_copy, tmp_path / "work", build={"workers": 1}))
    rel = f"train/{ref.bname}{store.SUFFIX}"
    assert summary.metadata["files"][rel]["zero_filled"] == ["CZ"] and summary.metadata["skipped"] == []
    cached = store.open_recording(summary.cache_dir / rel)
    rows = list(cached.facts.channels)
    assert not cached.eeg[rows.index("CZ")].any() and cached.eeg[rows.index("C3")].any()
    assert verify(summary.cache_dir, deep=True).ok


def test_an_electrode_without_calibration_under_missing_channels_error(base_config, corpus_copy, tmp_path):
    ref = target(corpus_copy)
    without_calibration(ref.edf, "CZ")
    cfg = make_config(
        base_config,
        corpus_copy,
        tmp_path / "work",
        build={"on_error": "skip", "workers": 1},
        preprocess={"missing_channels": "error"},
    )
    skipped = {s["file"]: s["reason"] for s in run_build(cfg).metadata["skipped"]}
    assert skipped[ref.relpath] == (
        f"{ref.edf.name}: required channels missing: CZ (physical minimum equals maximum "
        "(-5000): no calibration) (preprocess.missing_channels=error)"
    )
