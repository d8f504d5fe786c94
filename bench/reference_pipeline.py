"""The baseline eegcache is measured against: the typical published TUSZ preprocessing, one process.

Per recording: ``mne.io.read_raw_edf(preload=True)`` -> pick the same 19 10-20 electrodes eegcache stores (absent ones
zero-filled, as eegcache's ``missing_channels: zero``) -> FFT ``scipy.signal.resample`` to 200 Hz -> causal
``scipy.signal.lfilter`` Butterworth band-pass 0.5-80 Hz (order 4) and 60 Hz notch (Q 30) -> per-channel z-score ->
every 60 s window at 10 s stride materialised as float32 [windows, channels, samples] and written with
``numpy.savez_compressed`` next to one label per window (1 = any seizure sample in the window).

It parses the ``.csv_bi`` itself and uses nothing of eegcache but the channel list, so the comparison measures the
pipeline shape, not shared code. float32 windows match the sizes reported for this practice (~450 GB for TUSZ).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import mne
import numpy as np
from scipy import signal as sps

from eegcache.core.montage import TEN_TWENTY

RATE = 200  # Hz, the target rate (eegcache's default ``preprocess.sample_rate``)
WINDOW_S = 60
STRIDE_S = 10
_LABEL = re.compile(r"^EEG\s+([A-Z0-9]+)-(REF|LE)$")


@dataclass(frozen=True)
class Result:
    edf: Path
    out: Path
    seconds_of_eeg: float
    windows: int
    bytes: int
    wall_s: float
    cpu_s: float  # process CPU time (the pipeline is single-threaded apart from what numpy/MNE do internally)


def read_seizures(csv_bi: Path) -> list[tuple[float, float]]:
    """(start, stop) seconds of the ``seiz`` rows of a TUSZ ``.csv_bi`` file."""
    rows = [line for line in csv_bi.read_text().splitlines() if line and not line.startswith("#")]
    seizures = []
    for row in rows[1:]:  # rows[0] is the column header
        _, start, stop, label, _ = row.split(",")
        if label.strip() != "bckg":
            seizures.append((float(start), float(stop)))
    return seizures


def load_channels(edf: Path) -> tuple[np.ndarray, float]:
    """The 10-20 electrodes in eegcache's order as float64 [19, samples] in µV, and their rate in Hz."""
    raw = mne.io.read_raw_edf(edf, preload=True, verbose="error")
    by_electrode = {}
    for index, name in enumerate(raw.ch_names):
        match = _LABEL.match(name.strip().upper())
        if match:
            by_electrode[match.group(1)] = index
    data = raw.get_data() * 1e6  # MNE returns volts
    x = np.zeros((len(TEN_TWENTY), data.shape[1]))
    for row, electrode in enumerate(TEN_TWENTY):
        if electrode in by_electrode:
            x[row] = data[by_electrode[electrode]]
    return x, float(raw.info["sfreq"])


def resample(x: np.ndarray, rate: float) -> np.ndarray:
    """FFT resampling (``scipy.signal.resample``) of [channels, samples] from ``rate`` to 200 Hz."""
    return sps.resample(x, int(round(x.shape[1] * RATE / rate)), axis=-1)


def filters(x: np.ndarray) -> np.ndarray:
    """Causal (single-pass ``lfilter``) Butterworth band-pass 0.5-80 Hz, order 4, then a 60 Hz notch, Q 30."""
    b, a = sps.butter(4, [0.5, 80.0], btype="bandpass", fs=RATE)
    x = sps.lfilter(b, a, x, axis=-1)
    b, a = sps.iirnotch(60.0, 30.0, fs=RATE)
    return sps.lfilter(b, a, x, axis=-1)


def zscore(x: np.ndarray) -> np.ndarray:
    """Per-channel z-score, as float32."""
    std = x.std(axis=-1, keepdims=True)
    return ((x - x.mean(axis=-1, keepdims=True)) / np.where(std > 0, std, 1.0)).astype(np.float32)


def preprocess(x: np.ndarray, rate: float) -> np.ndarray:
    """Resample to 200 Hz, filter, z-score -> float32 [channels, samples]."""
    return zscore(filters(resample(x, rate)))


def windows(x: np.ndarray, seizures: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Every 60 s window at 10 s stride as a new array [windows, channels, samples], and uint8 labels [windows]."""
    length, stride = WINDOW_S * RATE, STRIDE_S * RATE
    starts = np.arange(0, x.shape[1] - length + 1, stride)
    stacked = np.stack([x[:, s : s + length] for s in starts]) if len(starts) else np.zeros((0, x.shape[0], length))
    t0, t1 = starts / RATE, (starts + length) / RATE
    labels = np.zeros(len(starts), dtype=np.uint8)
    for start, stop in seizures:
        labels |= ((t0 < stop) & (t1 > start)).astype(np.uint8)
    return stacked.astype(np.float32, copy=False), labels


def process_recording(edf: Path, out_dir: Path) -> Result:
    """Run the whole pipeline on one EDF and write ``out_dir/<bname>.npz``."""
    wall, cpu = time.perf_counter(), time.process_time()
    x, rate = load_channels(edf)
    seconds = x.shape[1] / rate
    stacked, labels = windows(preprocess(x, rate), read_seizures(edf.with_suffix(".csv_bi")))
    out = out_dir / f"{edf.stem}.npz"
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, windows=stacked, labels=labels)
    return Result(
        edf, out, seconds, len(labels), out.stat().st_size, time.perf_counter() - wall, time.process_time() - cpu
    )


def read_window(npz: Path, index: int) -> tuple[np.ndarray, int]:
    """One window the reference way: the compressed member must be inflated whole to index into it."""
    with np.load(npz) as archive:
        return archive["windows"][index], int(archive["labels"][index])
