"""A synthetic TUSZ v2.0.3 corpus: the project's default data for ``make demo``, tests and benchmarks.

Layout written (the same as the real corpus)::

    out_dir/edf/{train,dev,eval}/<patient>/<sNNN_YYYY>/<01_tcp_ar|02_tcp_le|03_tcp_ar_a>/
        <patient>_sNNN_tNNN.edf      EEG at 250/256/400/512 Hz, 1 s data records, µV
        <patient>_sNNN_tNNN.csv      per TCP bipolar channel: bckg or the seizure type
        <patient>_sNNN_tNNN.csv_bi   whole-recording (TERM) rows: bckg or seiz

Signals: pink-ish background shared across channels, a posterior alpha rhythm, 60 Hz line noise,
and in about half of the recordings one or two rhythmic 3-6 Hz seizures of 10-60 s. Everything is
drawn from ``numpy.random.default_rng`` seeded by (seed, patient, session, token), so a seed always
gives byte-identical files. Header text carries ``LEAKCHECK`` so tests can look for it downstream.
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass
from pathlib import Path

import edfio
import numpy as np
from scipy.signal import fftconvolve

from eegcache.core.montage import ELECTRODES, REFERENCE_SUFFIX, TCP_BIPOLAR, tuh_label
from eegcache.errors import ConfigError

log = logging.getLogger(__name__)

SPLITS = ("train", "dev", "eval")
MONTAGE_FOLDERS = tuple(REFERENCE_SUFFIX)  # 01_tcp_ar, 02_tcp_le, 03_tcp_ar_a
SAMPLE_RATES_HZ = (250, 256, 400, 512)
SEIZURE_TYPES = ("fnsz", "gnsz", "cpsz", "absz", "tnsz", "tcsz")
FOCAL_TYPES = ("fnsz", "cpsz")  # the others involve every channel
PHYSICAL_RANGE_UV = (-5000.0, 5000.0)
DIGITAL_RANGE = (-32767, 32767)
LINE_HZ = 60.0

# Where a focal seizure sits: one hemisphere. Smaller foci would vanish from whole-recording statistics
# once each channel is z-scored (the cache's preprocessing), which the build tests rely on.
_FOCI = (
    ("FP1", "F3", "C3", "P3", "O1", "F7", "T3", "T5", "A1"),
    ("FP2", "F4", "C4", "P4", "O2", "F8", "T4", "T6", "A2"),
)
# Alpha is strongest over the occipital and parietal electrodes and faint frontally.
_ALPHA_WEIGHT = {"O1": 1.0, "O2": 1.0, "P3": 0.8, "P4": 0.8, "PZ": 0.8, "T5": 0.7, "T6": 0.7,
                 "C3": 0.35, "C4": 0.35, "CZ": 0.35, "T3": 0.25, "T4": 0.25}  # fmt: skip


def _tcp_phase_classes() -> dict[str, int]:
    """A 3-colouring of the electrodes in which no two joined by a TCP pair share a colour (greedy)."""
    classes: dict[str, int] = {}
    for e in ELECTRODES:
        neighbours = {b if a == e else a for a, b in TCP_BIPOLAR if e in (a, b)}
        classes[e] = min({0, 1, 2} - {classes[n] for n in neighbours if n in classes})
    return classes


# A seizure reaches the electrodes of each TCP pair 120° apart in phase, so no labelled bipolar channel
# cancels out (equal waves on both electrodes of a pair would vanish from their difference).
_SEIZURE_PHASE_CLASS = _tcp_phase_classes()
_SHARED_SOURCES = 3
_MARGIN_S = 5.0  # no seizure closer than this to either end of a recording
_MIN_SEIZURE_S, _MAX_SEIZURE_S = 10.0, 60.0
_MAX_SEIZURE_FRACTION = 0.3  # of a recording: seizures stay the exception, as in TUSZ


@dataclass(frozen=True)
class Seizure:
    start_s: float
    stop_s: float
    kind: str  # one of SEIZURE_TYPES
    electrodes: frozenset[str]  # electrodes that carry the discharge


@dataclass(frozen=True)
class Patient:
    pid: str
    sex: str
    birthdate: datetime.date


@dataclass(frozen=True)
class Session:
    number: int  # 1, 2, ... (the NNN of sNNN)
    year: int
    montage_dir: str  # one of MONTAGE_FOLDERS
    tokens: int  # recordings in the session
    start: datetime.datetime  # start of its first recording


@dataclass(frozen=True)
class Recording:
    split: str
    patient: Patient
    session: Session
    token: int
    start: datetime.datetime
    rate_hz: int
    duration_s: int
    electrodes: tuple[str, ...]
    seizures: tuple[Seizure, ...]
    signal_key: tuple[int, ...]  # seeds the signals of this recording alone

    @property
    def bname(self) -> str:
        return f"{self.patient.pid}_s{self.session.number:03d}_t{self.token:03d}"

    def stem(self, out_dir: Path) -> Path:
        """``out_dir/edf/<split>/<patient>/<sNNN_YYYY>/<montage folder>/<bname>``, without suffix."""
        session_dir = f"s{self.session.number:03d}_{self.session.year}"
        return out_dir / "edf" / self.split / self.patient.pid / session_dir / self.session.montage_dir / self.bname


def write_demo_corpus(
    out_dir: Path, patients_per_split: int = 2, seed: int = 0, minutes: tuple[float, float] = (2.0, 4.0)
) -> list[Path]:
    """Write the corpus under out_dir; return the EDF paths written, sorted.

    Each patient has 1-3 sessions of 1-3 recordings; each recording lasts a whole number of seconds
    drawn from ``minutes`` (minimum, maximum; in minutes).
    """
    if patients_per_split < 1 or seed < 0:
        raise ConfigError(f"need patients_per_split >= 1 and seed >= 0, got {patients_per_split} and {seed}")
    if not 0 < minutes[0] <= minutes[1]:
        raise ConfigError(f"minutes must be a range (min, max) with 0 < min <= max, got {minutes}")
    plans = plan_corpus(patients_per_split, seed, minutes)
    paths = [write_recording(plan, out_dir) for plan in plans]
    hours = sum(p.duration_s for p in plans) / 3600
    seizures = sum(len(p.seizures) for p in plans)
    log.info("demo corpus: %d recordings, %.2f h of EEG, %d seizures under %s", len(plans), hours, seizures, out_dir)
    return sorted(paths)


def patient_ids(seed: int, count: int) -> list[str]:
    """``count`` distinct 8-letter lowercase ids (``aaaxxxxx``), drawn from the seed."""
    numbers = np.random.default_rng([seed, 0]).choice(26**5, size=count, replace=False)
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["aaa" + "".join(letters[int(n) // 26**k % 26] for k in range(4, -1, -1)) for n in numbers]


def plan_corpus(patients_per_split: int, seed: int, minutes: tuple[float, float]) -> list[Recording]:
    """Every recording of the corpus, decided before any signal is drawn."""
    ids = patient_ids(seed, len(SPLITS) * patients_per_split)
    plans: list[Recording] = []
    for split_index, split in enumerate(SPLITS):
        split_ids = sorted(ids[split_index * patients_per_split : (split_index + 1) * patients_per_split])
        first_in_split = len(plans)
        for patient_index, pid in enumerate(split_ids):
            patient, sessions = plan_patient(seed, split_index, patient_index, pid)
            for session in sessions:
                for token in range(session.tokens):
                    key = (seed, split_index, patient_index, session.number, token)
                    # Every 5th recording lacks FZ/PZ, as some TUSZ files do; the first of each split
                    # always has seizures so that no split is ever without them.
                    plans.append(
                        plan_recording(
                            key,
                            split,
                            patient,
                            session,
                            minutes,
                            drop_midline=len(plans) % 5 == 4,
                            force_seizures=len(plans) == first_in_split,
                        )
                    )
    return plans


def plan_patient(seed: int, split_index: int, patient_index: int, pid: str) -> tuple[Patient, list[Session]]:
    """A patient (sex, birthdate 18-80 years before the first session) and their 1-3 sessions."""
    rng = np.random.default_rng([seed, 1, split_index, patient_index])
    year = int(rng.integers(2002, 2016))
    sex = str(rng.choice(["F", "M"]))
    birthdate = datetime.date(year - int(rng.integers(18, 81)), int(rng.integers(1, 13)), int(rng.integers(1, 29)))
    sessions = []
    for number in range(1, int(rng.integers(1, 4)) + 1):
        year += int(rng.integers(0, 3)) if number > 1 else 0
        montage_dir = str(rng.choice(MONTAGE_FOLDERS))
        tokens = int(rng.integers(1, 4))
        day = datetime.date(year, int(rng.integers(1, 13)), int(rng.integers(1, 29)))
        start = datetime.datetime.combine(day, datetime.time(*(int(x) for x in rng.integers([8, 0, 0], [16, 60, 60]))))
        sessions.append(Session(number, year, montage_dir, tokens, start))
    return Patient(pid=pid, sex=sex, birthdate=birthdate), sessions


def plan_recording(
    key: tuple[int, ...],
    split: str,
    patient: Patient,
    session: Session,
    minutes: tuple[float, float],
    drop_midline: bool,
    force_seizures: bool,
) -> Recording:
    """Recording ``key`` = (seed, split, patient, session, token indices): rate, whole-second duration,
    electrodes present and seizures (times in seconds)."""
    rng = np.random.default_rng([key[0], 2, *key[1:]])  # the tag keeps the streams of (seed, 1/2/3, ...) apart
    token = key[-1]
    rate_hz = int(rng.choice(SAMPLE_RATES_HZ))
    duration_s = max(1, round(rng.uniform(*minutes) * 60))
    excluded = {"A1", "A2"} if session.montage_dir == "03_tcp_ar_a" else set()
    excluded |= {"FZ", "PZ"} if drop_midline else set()
    electrodes = tuple(e for e in ELECTRODES if e not in excluded)
    seizures: tuple[Seizure, ...] = ()
    if rng.random() < 0.5 or force_seizures:
        kind = str(rng.choice(SEIZURE_TYPES))
        focus = _FOCI[int(rng.integers(len(_FOCI)))] if kind in FOCAL_TYPES else electrodes
        involved = frozenset(focus) & frozenset(electrodes)
        spans = place_seizures(rng, duration_s, int(rng.integers(1, 3)))
        seizures = tuple(Seizure(a, b, kind, involved) for a, b in spans)
    start = session.start + datetime.timedelta(minutes=20 * token)
    signal_key = (key[0], 3, *key[1:])
    return Recording(split, patient, session, token, start, rate_hz, duration_s, electrodes, seizures, signal_key)


def place_seizures(rng: np.random.Generator, duration_s: float, count: int) -> list[tuple[float, float]]:
    """Up to ``count`` non-overlapping (start, stop) spans in seconds (4 decimals), each 10-60 s long,
    one per equal slot of the recording, at least 5 s from its ends and together at most 30 % of it;
    fewer spans if the recording is too short."""
    usable = duration_s - 2 * _MARGIN_S
    while count:
        slot = usable / count
        longest = min(_MAX_SEIZURE_S, slot - 4, _MAX_SEIZURE_FRACTION * duration_s / count)
        if longest >= _MIN_SEIZURE_S:
            break
        count -= 1
    spans = []
    for i in range(count):
        length = round(rng.uniform(_MIN_SEIZURE_S, longest), 4)
        start = round(_MARGIN_S + i * slot + rng.uniform(2, slot - length - 2), 4)
        spans.append((start, round(start + length, 4)))
    return spans


def write_recording(plan: Recording, out_dir: Path) -> Path:
    """Draw the signals of ``plan`` and write its .edf, .csv and .csv_bi; return the EDF path."""
    stem = plan.stem(out_dir)
    stem.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(list(plan.signal_key))
    n = plan.duration_s * plan.rate_hz
    eeg = background_eeg(rng, plan.electrodes, plan.rate_hz, n)
    for seizure in plan.seizures:
        add_seizure(rng, eeg, plan.electrodes, seizure, plan.rate_hz)
    edf_path = stem.with_suffix(".edf")
    to_edf(plan, eeg, ecg(rng, plan.rate_hz, n), photic(rng, plan.rate_hz, n)).write(edf_path)
    stem.with_suffix(".csv").write_text(csv_text(plan))
    stem.with_suffix(".csv_bi").write_text(csv_bi_text(plan))
    return edf_path


def shaped_noise(rng: np.random.Generator, gain: np.ndarray, rows: int, n: int) -> np.ndarray:
    """``rows`` × ``n`` Gaussian noise with amplitude spectrum ``gain`` (per rfft bin), unit RMS per row.
    One row at a time, which keeps hour-long recordings within a few hundred MB."""
    x = np.empty((rows, n))
    for row in x:
        spectrum = rng.standard_normal((len(gain), 2)).view(np.complex128)[:, 0] * gain
        spectrum[0] = 0.0
        row[:] = np.fft.irfft(spectrum, n=n)
        row /= max(row.std(), 1e-12)
    return x


def background_eeg(rng: np.random.Generator, electrodes: tuple[str, ...], rate_hz: int, n: int) -> np.ndarray:
    """Seizure-free EEG (µV), shape (len(electrodes), n): 20-35 µV RMS of 1/f^0.6-amplitude noise, half of
    it shared among channels, plus an 8-12 Hz alpha rhythm (strongest posteriorly) and 1-3 µV of line noise."""
    freqs = np.fft.rfftfreq(n, 1 / rate_hz)
    pink = 1.0 / np.maximum(freqs, 0.5) ** 0.6
    k = len(electrodes)
    eeg = shaped_noise(rng, pink, k, n)
    mixing = rng.uniform(0.2, 1.0, (k, _SHARED_SOURCES))  # positive weights: a common-reference-like correlation
    eeg += mixing / np.linalg.norm(mixing, axis=1, keepdims=True) @ shaped_noise(rng, pink, _SHARED_SOURCES, n)
    eeg *= np.sqrt(0.5) * rng.uniform(20.0, 35.0, (k, 1))  # RMS per channel, µV
    alpha_hz = rng.uniform(8.5, 11.5)
    alpha = shaped_noise(rng, np.exp(-0.5 * ((freqs - alpha_hz) / 0.6) ** 2), 1, n)
    weights = np.array([_ALPHA_WEIGHT.get(e, 0.12) for e in electrodes])[:, None]
    eeg += rng.uniform(25.0, 40.0) * weights * alpha
    line = rng.uniform(1.0, 3.0) * np.sin(2 * np.pi * LINE_HZ * np.arange(n) / rate_hz + rng.uniform(0, 2 * np.pi))
    for row in eeg:
        row += line
    return eeg


def add_seizure(
    rng: np.random.Generator, eeg: np.ndarray, electrodes: tuple[str, ...], seizure: Seizure, rate_hz: int
) -> None:
    """Add a rhythmic discharge to ``eeg`` (µV, in place) on the seizure's electrodes: frequency gliding
    from 5-6.5 Hz down to 3-4 Hz, amplitude ramping up to 180-270 µV (several times the background)
    over the first 30 % and fading over the last 10 %; per-electrode gain and phase so TCP pairs show it."""
    i0, i1 = round(seizure.start_s * rate_hz), round(seizure.stop_s * rate_hz)
    t = np.arange(i1 - i0) / rate_hz
    length = (i1 - i0) / rate_hz
    f0, f1 = rng.uniform(5.0, 6.5), rng.uniform(3.0, 4.0)
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * length))
    envelope = np.minimum(1.0, 0.15 + t / (0.3 * length)) * np.minimum(1.0, (length - t) / (0.1 * length))
    rows = [i for i, e in enumerate(electrodes) if e in seizure.electrodes]
    gains = rng.uniform(0.6, 1.4, (len(rows), 1))
    lags = np.array([[_SEIZURE_PHASE_CLASS[electrodes[i]] * 2 * np.pi / 3] for i in rows])
    shifted = phase + lags + rng.uniform(-0.2, 0.2, (len(rows), 1))
    wave = np.sin(shifted) - 0.35 * np.sin(2 * shifted)  # the harmonic sharpens each cycle towards a spike
    eeg[rows, i0:i1] += rng.uniform(180.0, 270.0) * gains * envelope * wave


def ecg(rng: np.random.Generator, rate_hz: int, n: int) -> np.ndarray:
    """An ECG-like trace (µV): P-QRS-T complexes of ~600 µV at 55-95 beats per minute with 3 % jitter."""
    mean_rr = 60.0 / rng.uniform(55.0, 95.0)
    beats = np.cumsum(mean_rr * (1 + 0.03 * rng.standard_normal(int(n / rate_hz / mean_rr) + 2)))
    impulses = np.zeros(n)
    impulses[np.round(beats[beats * rate_hz < n] * rate_hz).astype(int)] = 1.0
    t = np.arange(-0.4, 0.4, 1 / rate_hz)
    # (height, centre s, width s) of the P wave, Q, R, S and T wave.
    waves = ((0.12, -0.17, 0.025), (-0.15, -0.02, 0.008), (1.0, 0.0, 0.01), (-0.25, 0.025, 0.008), (0.3, 0.25, 0.04))
    complex_ = sum(h * np.exp(-0.5 * ((t - at) / width) ** 2) for h, at, width in waves)
    return 600.0 * fftconvolve(impulses, complex_, mode="same") + 5.0 * rng.standard_normal(n)


def photic(rng: np.random.Generator, rate_hz: int, n: int) -> np.ndarray:
    """A photic-stimulator trace (µV): zero except one train of up to 10 s of flashes at 5, 10 or 15 Hz."""
    out, train = np.zeros(n), min(n, 10 * rate_hz)
    start, flash_hz = int(rng.integers(0, n - train + 1)), int(rng.choice([5, 10, 15]))
    out[start : start + train] = 100.0 * ((np.arange(train) * flash_hz / rate_hz) % 1.0 < 0.1)
    return out


def to_edf(plan: Recording, eeg: np.ndarray, ekg: np.ndarray, flashes: np.ndarray) -> edfio.Edf:
    """The EDF of a recording from its signals (µV, at ``plan.rate_hz``): TUH labels, 1 s data records,
    header text marked ``LEAKCHECK``."""
    suffix = REFERENCE_SUFFIX[plan.session.montage_dir]

    def signal(data: np.ndarray, rate_hz: int, label: str) -> edfio.EdfSignal:
        return edfio.EdfSignal(
            data,
            rate_hz,
            label=label,
            physical_dimension="uV",
            physical_range=PHYSICAL_RANGE_UV,
            digital_range=DIGITAL_RANGE,
        )

    signals = [signal(x, plan.rate_hz, tuh_label(e, suffix)) for e, x in zip(plan.electrodes, eeg)]
    signals += [signal(ekg, plan.rate_hz, tuh_label("EKG1", suffix)), signal(flashes, plan.rate_hz, "PHOTIC-REF")]
    # Burst-suppression trends of the TUH recording software: 1 Hz and flat in these demo files.
    signals += [signal(np.zeros(plan.duration_s), 1, label) for label in ("IBI", "BURSTS", "SUPPR")]
    pid = plan.patient.pid
    patient = edfio.Patient(
        code=f"PID_{pid}_LEAKCHECK",
        sex=plan.patient.sex,
        birthdate=plan.patient.birthdate,
        name=f"Demo_Patient_{pid}_LEAKCHECK",
    )
    recording = edfio.Recording(
        startdate=plan.start.date(),
        hospital_administration_code=f"ADM_{plan.bname[:13]}",
        investigator_technician_code=f"TECH_LEAKCHECK_{pid[-2:]}",
        equipment_code="EEGAMP_LEAKCHECK",
    )
    return edfio.Edf(signals, patient=patient, recording=recording, starttime=plan.start.time(), data_record_duration=1)


def _header(plan: Recording) -> str:
    return (
        f"# version = csv_v1.0.0\n# bname = {plan.bname}\n# duration = {plan.duration_s:.4f} secs\n#\n"
        "channel,start_time,stop_time,label,confidence\n"
    )


def _rows(channel: str, spans: list[tuple[float, float, str]], duration_s: float) -> list[str]:
    """Rows covering [0, duration_s] for one channel: ``spans`` (start, stop, label) with bckg between."""
    rows, at = [], 0.0
    for start, stop, label in spans:
        if start > at:
            rows.append(f"{channel},{at:.4f},{start:.4f},bckg,1.0000")
        rows.append(f"{channel},{start:.4f},{stop:.4f},{label},1.0000")
        at = stop
    if at < duration_s:
        rows.append(f"{channel},{at:.4f},{duration_s:.4f},bckg,1.0000")
    return rows


def csv_bi_text(plan: Recording) -> str:
    """The .csv_bi file: TERM rows, seiz for each seizure, bckg elsewhere, times in seconds."""
    spans = [(s.start_s, s.stop_s, "seiz") for s in plan.seizures]
    return _header(plan) + "".join(r + "\n" for r in _rows("TERM", spans, plan.duration_s))


def csv_text(plan: Recording) -> str:
    """The .csv file: rows for each TCP channel whose electrodes are present; a channel carries the
    seizure type while either of its electrodes is involved, bckg otherwise."""
    present = set(plan.electrodes)
    rows = []
    for a, b in TCP_BIPOLAR:
        if a in present and b in present:
            spans = [(s.start_s, s.stop_s, s.kind) for s in plan.seizures if {a, b} & s.electrodes]
            rows += _rows(f"{a}-{b}", spans, plan.duration_s)
    return _header(plan) + "".join(r + "\n" for r in rows)
