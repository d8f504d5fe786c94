"""The synthetic TUSZ corpus: layout, channel labels, annotation files, signal content, determinism."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import edfio
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.signal import welch

from eegcache.core.montage import ELECTRODES, TCP_BIPOLAR
from eegcache.devtools import demo
from eegcache.errors import ConfigError

FILE = re.compile(
    r"^edf/(train|dev|eval)/([a-z]{8})/s(\d{3})_(\d{4})/(01_tcp_ar|02_tcp_le|03_tcp_ar_a)/"
    r"\2_s\3_t(\d{3})\.(edf|csv|csv_bi)$"
)
ROW = re.compile(r"^([A-Z0-9]+(?:-[A-Z0-9]+)?),(\d+\.\d{4}),(\d+\.\d{4}),([a-z]+),1\.0000$")
TCP_NAMES = {f"{a}-{b}" for a, b in TCP_BIPOLAR}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, list[Path]]:
    root = tmp_path_factory.mktemp("demo")
    return root, demo.write_demo_corpus(root, patients_per_split=3, seed=5, minutes=(1.0, 2.0))


@pytest.fixture(scope="module")
def edfs(corpus) -> dict[Path, edfio.Edf]:
    return {path: edfio.read_edf(path) for path in corpus[1]}


def read_annotation(path: Path) -> tuple[list[str], list[tuple[str, float, float, str]]]:
    lines = path.read_text().splitlines()
    rows = []
    for line in lines[5:]:
        match = ROW.match(line)
        assert match, f"{path.name}: bad row {line!r}"
        rows.append((match[1], float(match[2]), float(match[3]), match[4]))
    return lines[:5], rows


def seizure_spans(edf_path: Path) -> list[tuple[float, float]]:
    _, rows = read_annotation(edf_path.with_suffix(".csv_bi"))
    return [(a, b) for _, a, b, label in rows if label == "seiz"]


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2)))


def test_layout_and_names(corpus):
    root, paths = corpus
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert all(FILE.match(f) for f in files), [f for f in files if not FILE.match(f)][:3]
    assert paths == sorted(root.rglob("*.edf")) and len(files) == 3 * len(paths)
    for path in paths:
        assert path.with_suffix(".csv").is_file() and path.with_suffix(".csv_bi").is_file()
    tokens, montages, sessions = defaultdict(list), defaultdict(set), defaultdict(set)
    for path in paths:
        split, patient, session, year, montage, token, _ = FILE.match(path.relative_to(root).as_posix()).groups()
        tokens[(patient, session)].append(int(token))
        montages[(patient, session)].add(montage)
        sessions[patient].add(int(session))
        assert 2000 <= int(year) <= 2025
    assert all(sorted(t) == list(range(len(t))) and 1 <= len(t) <= 3 for t in tokens.values())
    assert all(len(m) == 1 for m in montages.values())
    assert all(s == set(range(1, len(s) + 1)) and len(s) <= 3 for s in sessions.values())
    assert max(len(t) for t in tokens.values()) > 1 and max(len(s) for s in sessions.values()) > 1
    assert {m for ms in montages.values() for m in ms} == set(demo.MONTAGE_FOLDERS)


def test_patients_are_disjoint_across_splits(corpus):
    root, _ = corpus
    by_split = {split: {p.name for p in (root / "edf" / split).iterdir()} for split in demo.SPLITS}
    assert all(len(patients) == 3 for patients in by_split.values())
    assert len(set.union(*by_split.values())) == 9


def test_channel_labels_follow_the_montage_folder(edfs):
    without_midline = 0
    for path, edf in edfs.items():
        suffix = "LE" if path.parent.name == "02_tcp_le" else "REF"
        eeg = [label for label in edf.labels if label.startswith("EEG ")]
        assert all(label.endswith(f"-{suffix}") for label in eeg), eeg
        electrodes = {label[4:].rsplit("-", 1)[0] for label in eeg} - {"EKG1"}
        assert electrodes <= set(ELECTRODES)
        has_ears = {"A1", "A2"} <= electrodes
        assert has_ears == (path.parent.name != "03_tcp_ar_a")
        assert {"FZ", "PZ"} <= electrodes or not {"FZ", "PZ"} & electrodes
        without_midline += "FZ" not in electrodes
        assert set(ELECTRODES) - {"A1", "A2", "FZ", "PZ"} <= electrodes
        assert {"PHOTIC-REF", "IBI", "BURSTS", "SUPPR", f"EEG EKG1-{suffix}"} <= set(edf.labels)
    assert 0.1 <= without_midline / len(edfs) <= 0.3


def test_rates_ranges_and_durations(edfs):
    rates = set()
    for path, edf in edfs.items():
        assert edf.data_record_duration == 1 and 60 <= edf.duration <= 120
        for signal in edf.signals:
            one_hz = signal.label in ("IBI", "BURSTS", "SUPPR")
            rate = signal.sampling_frequency
            assert rate == 1 if one_hz else rate == edf.signals[0].sampling_frequency
            assert signal.physical_dimension == "uV"
            assert tuple(signal.physical_range) == (-5000, 5000) and tuple(signal.digital_range) == (-32767, 32767)
            assert len(signal.data) == rate * edf.duration
            assert np.abs(signal.data).max() < 1000, f"{path.name} {signal.label} near the physical range"
        rates.add(edf.signals[0].sampling_frequency)
    assert rates <= set(demo.SAMPLE_RATES_HZ) and len(rates) >= 3


def test_background_has_tens_of_microvolts_and_correlated_channels(edfs):
    path, edf = next((p, e) for p, e in edfs.items() if not seizure_spans(p))
    eeg = np.array([s.data for s in edf.signals if s.label.startswith("EEG ") and "EKG" not in s.label])
    assert all(10 < rms(x) < 80 for x in eeg)
    corr = np.corrcoef(eeg)[np.triu_indices(len(eeg), 1)]
    assert np.mean(corr) > 0.2


def test_alpha_is_strongest_posteriorly_and_line_noise_is_small(edfs):
    path, edf = next((p, e) for p, e in edfs.items() if not seizure_spans(p))
    suffix = "LE" if path.parent.name == "02_tcp_le" else "REF"
    rate = edf.signals[0].sampling_frequency
    freqs, o1 = welch(edf.get_signal(f"EEG O1-{suffix}").data, fs=rate, nperseg=int(4 * rate))
    _, fp1 = welch(edf.get_signal(f"EEG FP1-{suffix}").data, fs=rate, nperseg=int(4 * rate))
    band = (freqs >= 4) & (freqs <= 30)
    assert 8 <= freqs[band][np.argmax(o1[band])] <= 12
    alpha = (freqs >= 8) & (freqs <= 12)
    assert o1[alpha].sum() > 3 * fp1[alpha].sum()
    line = np.argmin(np.abs(freqs - 60))
    assert o1[line] > 3 * np.median(o1[(freqs > 50) & (freqs < 70)])
    assert o1[line] * (freqs[1] - freqs[0]) < 10  # µV²: a few µV of 60 Hz at most


def test_seizures_are_louder_on_their_channels_only(edfs):
    """Bipolar channels labelled with a seizure type are several times louder during it; the rest are not."""
    labelled_ratios = []
    for path, edf in edfs.items():
        suffix = "LE" if path.parent.name == "02_tcp_le" else "REF"
        rate = edf.signals[0].sampling_frequency
        _, rows = read_annotation(path.with_suffix(".csv"))
        spans = seizure_spans(path)
        background = np.ones(int(edf.duration * rate), dtype=bool)
        for start, stop in spans:
            background[round(start * rate) : round(stop * rate)] = False
        for start, stop in spans:
            inside = slice(round(start * rate), round(stop * rate))
            for channel in {row[0] for row in rows}:
                a, b = channel.split("-")
                x = edf.get_signal(f"EEG {a}-{suffix}").data - edf.get_signal(f"EEG {b}-{suffix}").data
                ratio = rms(x[inside]) / rms(x[background])
                labelled = any(c == channel and s == start and label != "bckg" for c, s, _, label in rows)
                assert ratio > 2 if labelled else ratio < 1.5, f"{path.name} {channel} {ratio:.2f}"
                labelled_ratios += [ratio] if labelled else []
    assert len(labelled_ratios) > 20 and np.median(labelled_ratios) > 4


def test_ecg_channel_beats_at_a_heart_rate(edfs):
    path, edf = next(iter(edfs.items()))
    suffix = "LE" if path.parent.name == "02_tcp_le" else "REF"
    ekg = edf.get_signal(f"EEG EKG1-{suffix}").data
    peaks = np.flatnonzero((ekg[1:-1] > 300) & (ekg[1:-1] >= ekg[:-2]) & (ekg[1:-1] > ekg[2:]))
    assert 50 <= len(peaks) / (edf.duration / 60) <= 100


def test_csv_bi_covers_the_whole_recording(edfs):
    with_seizures = 0
    for path, edf in edfs.items():
        header, rows = read_annotation(path.with_suffix(".csv_bi"))
        assert header == [
            "# version = csv_v1.0.0",
            f"# bname = {path.stem}",
            f"# duration = {edf.duration:.4f} secs",
            "#",
            "channel,start_time,stop_time,label,confidence",
        ]
        assert {row[0] for row in rows} == {"TERM"} and {row[3] for row in rows} <= {"bckg", "seiz"}
        assert rows[0][1] == 0 and rows[-1][2] == edf.duration
        assert all(prev[2] == row[1] and prev[3] != row[3] for prev, row in zip(rows, rows[1:]))
        spans = seizure_spans(path)
        assert all(a >= 5 and b <= edf.duration - 5 and 10 <= b - a <= 60 for a, b in spans)
        with_seizures += bool(spans)
    assert 0.3 <= with_seizures / len(edfs) <= 0.8


def test_csv_has_every_tcp_channel_and_agrees_with_csv_bi(edfs):
    for path, edf in edfs.items():
        header, rows = read_annotation(path.with_suffix(".csv"))
        assert header == read_annotation(path.with_suffix(".csv_bi"))[0]
        channels = {row[0] for row in rows}
        ears = {"A1-T3", "T4-A2"}
        assert channels == (TCP_NAMES - ears if path.parent.name == "03_tcp_ar_a" else TCP_NAMES)
        seizure_rows = [row for row in rows if row[3] != "bckg"]
        assert {row[3] for row in seizure_rows} <= set(demo.SEIZURE_TYPES)
        assert {(a, b) for _, a, b, _ in seizure_rows} == set(seizure_spans(path))
        for channel in channels:
            own = [row for row in rows if row[0] == channel]
            assert own[0][1] == 0 and own[-1][2] == edf.duration
            assert all(prev[2] == row[1] for prev, row in zip(own, own[1:]))


def test_patient_and_recording_headers_are_recognisable(corpus, edfs):
    root, _ = corpus
    names = set()
    for path in edfs:
        patient = path.relative_to(root).parts[2]
        header = path.read_bytes()[:256]
        assert f"PID_{patient}_LEAKCHECK".encode() in header[8:88]
        assert f"Demo_Patient_{patient}_LEAKCHECK".encode() in header[8:88]
        assert b"LEAKCHECK" in header[88:168] and f"ADM_{patient}_s".encode() in header[88:168]
        year = path.parent.parent.name.split("_")[1]
        assert edfs[path].startdate.year == int(year)
        names.add(edfs[path].patient.name)
    assert len(names) == 9


def test_same_seed_gives_identical_bytes_and_another_seed_does_not(tmp_path):
    def tree(root: Path) -> dict[str, bytes]:
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    for run in ("a", "b"):
        demo.write_demo_corpus(tmp_path / run, patients_per_split=1, seed=11, minutes=(0.5, 1.0))
    demo.write_demo_corpus(tmp_path / "c", patients_per_split=1, seed=12, minutes=(0.5, 1.0))
    assert tree(tmp_path / "a") == tree(tmp_path / "b") and len(tree(tmp_path / "a")) >= 9
    assert tree(tmp_path / "a") != tree(tmp_path / "c")


@given(duration=st.integers(1, 4000), count=st.integers(1, 2), seed=st.integers(0, 2**32))
def test_seizures_fit_inside_the_recording_without_overlap(duration, count, seed):
    spans = demo.place_seizures(np.random.default_rng(seed), duration, count)
    assert len(spans) <= count and bool(spans) == (duration >= 34)
    assert all(a >= 5 and b <= duration - 5 and 10 <= round(b - a, 4) <= 60 for a, b in spans)
    assert sum(b - a for a, b in spans) <= 0.3 * duration + 1e-3
    assert all(prev[1] < nxt[0] for prev, nxt in zip(spans, spans[1:]))


@pytest.mark.parametrize(
    "kwargs", [{"patients_per_split": 0}, {"seed": -1}, {"minutes": (0.0, 1.0)}, {"minutes": (3.0, 2.0)}]
)
def test_bad_arguments_are_config_errors(tmp_path, kwargs):
    with pytest.raises(ConfigError):
        demo.write_demo_corpus(tmp_path, **kwargs)
    assert not any(tmp_path.iterdir())
