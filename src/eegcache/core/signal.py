"""Preprocessing steps: pure functions of arrays and explicit parameters (numpy/scipy only).

Arrays are [channels, samples]; rates are in Hz; times in seconds. The pipeline order, and why:
select channels (fixed cache order) -> resample (polyphase, with its own anti-alias filter; every later
step then runs on fewer samples) -> band-pass and notch (zero-phase SOS, so seizure onsets do not shift)
-> per-channel z-score with clipping (statistics of the filtered signal) -> cast to the cache dtype.

The shortest recording the pipeline accepts is set by the zero-phase filters, not by any training window
(windows are chosen at read time, and the dataset leaves out recordings shorter than one window): after
resampling it must be longer than the filters' edge padding (:func:`filter_padding`; 33 samples, 0.165 s at
200 Hz with the default band-pass and notch). A shorter one is a RecordingError, like any other unusable recording.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from scipy import signal as sps

from eegcache.core.montage import TCP_BIPOLAR, TEN_TWENTY
from eegcache.errors import RecordingError

_MAX_RATIO_DENOMINATOR = 1000  # 256 -> 200 Hz is 25/32, 512 -> 200 is 25/64; anything finer is not a real EEG rate


def select_channels(
    electrodes: Mapping[str, np.ndarray], n_samples: int, montage: str, missing: str
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Stack the montage's channels in fixed order -> ([channels, n_samples] float64, zero-filled channel names).

    ``electrodes`` maps electrode names (``FP1``) to 1-D signals in µV. ``ref19`` keeps the 10-20
    electrodes as recorded; ``tcp22`` forms the TCP bipolar derivations (``FP1-F7`` = FP1 - F7).
    ``missing`` = ``error`` raises on an absent electrode, ``zero`` fills the affected channels with zeros.
    """
    if montage == "ref19":
        wanted: Sequence[tuple[str, ...]] = [(name,) for name in TEN_TWENTY]
    elif montage == "tcp22":
        wanted = TCP_BIPOLAR
    else:
        raise ValueError(f"unknown montage {montage!r}")
    absent = sorted({e for channel in wanted for e in channel if e not in electrodes})
    if absent and missing == "error":
        raise RecordingError(f"required channels missing: {', '.join(absent)} (preprocess.missing_channels=error)")
    out = np.zeros((len(wanted), n_samples), dtype=np.float64)
    zero_filled = []
    for row, channel in enumerate(wanted):
        name = "-".join(channel)
        if any(e not in electrodes for e in channel):
            zero_filled.append(name)
            continue
        out[row] = electrodes[channel[0]] if len(channel) == 1 else electrodes[channel[0]] - electrodes[channel[1]]
    return out, tuple(zero_filled)


def resample_ratio(from_rate: float, to_rate: float) -> Fraction:
    """Up/down ratio for polyphase resampling; RecordingError for rates that are not a usable EEG rate."""
    if not np.isfinite(from_rate) or from_rate < to_rate:
        raise RecordingError(f"unsupported sampling rate {from_rate} Hz (below the target {to_rate} Hz)")
    ratio = Fraction(to_rate) / Fraction(from_rate).limit_denominator(_MAX_RATIO_DENOMINATOR)
    if abs(float(Fraction(from_rate).limit_denominator(_MAX_RATIO_DENOMINATOR)) - from_rate) > 1e-9 * from_rate:
        raise RecordingError(f"unsupported sampling rate {from_rate} Hz (not a rational rate)")
    return ratio


def resample_to(x: np.ndarray, from_rate: float, to_rate: float) -> np.ndarray:
    """Polyphase resampling along the last axis (scipy ``resample_poly``); output has ceil(n·to/from) samples."""
    ratio = resample_ratio(from_rate, to_rate)
    if ratio == 1:
        return x
    return sps.resample_poly(x, ratio.numerator, ratio.denominator, axis=-1)


def bandpass_sos(rate: float, low: float, high: float, order: int) -> np.ndarray:
    """Butterworth band-pass [low, high] Hz as second-order sections."""
    return sps.butter(order, [low, high], btype="bandpass", fs=rate, output="sos")


def notch_sos(rate: float, freq: float, q: float) -> np.ndarray:
    """IIR notch at ``freq`` Hz (quality factor ``q``) as second-order sections; none when ``freq`` is 0."""
    if not freq:
        return np.empty((0, 6))
    b, a = sps.iirnotch(freq, q, fs=rate)
    return sps.tf2sos(b, a)


def filter_padding(*sections: np.ndarray) -> int:
    """Samples :func:`zero_phase` pads each end with (scipy's default ``padlen`` for the cascade of ``sections``);
    a signal must be longer than this to be filtered."""
    sos = np.vstack(sections)
    if len(sos) == 0:
        return 0
    zeros_at_origin = min(int((sos[:, 2] == 0).sum()), int((sos[:, 5] == 0).sum()))
    return 3 * (2 * len(sos) + 1 - zeros_at_origin)


def zero_phase(x: np.ndarray, *sections: np.ndarray) -> np.ndarray:
    """Apply the cascade of the given filters forward and backward along the last axis (no phase shift).

    Cascading band-pass and notch into one ``sosfiltfilt`` pass halves the filtering time against two passes.
    ``x`` must have more than :func:`filter_padding` samples (RecordingError otherwise).
    """
    sos = np.vstack(sections)
    if len(sos) == 0:
        return x
    padding = filter_padding(sos)
    if x.shape[-1] <= padding:
        raise RecordingError(
            f"recording too short to filter: {x.shape[-1]} samples after resampling; the zero-phase filters "
            f"need more than {padding}"
        )
    return sps.sosfiltfilt(sos, x, axis=-1, padlen=padding)


def zscore_clip(x: np.ndarray, clip: float) -> np.ndarray:
    """Per-channel z-score, clipped to [-clip, clip]; a flat (e.g. zero-filled) channel stays all zeros."""
    mean = x.mean(axis=-1, keepdims=True)
    std = x.std(axis=-1, keepdims=True)
    centred = x - mean
    scaled = np.divide(centred, std, out=np.zeros_like(centred), where=std > 0)
    return np.clip(scaled, -clip, clip, out=scaled)


def to_dtype(x: np.ndarray, dtype: str) -> np.ndarray:
    return x.astype(dtype)


def label_mask(seizures: Sequence[tuple[float, float]], n_samples: int, rate: float) -> np.ndarray:
    """Per-sample uint8 mask: sample i (at time i/rate s) is 1 when start <= i/rate < stop for a seizure."""
    mask = np.zeros(n_samples, dtype=np.uint8)
    for start, stop in seizures:
        first = int(np.ceil(start * rate - 1e-9))
        last = int(np.ceil(stop * rate - 1e-9))
        mask[max(first, 0) : min(last, n_samples)] = 1
    return mask


@dataclass(frozen=True)
class Processed:
    eeg: np.ndarray  # [channels, samples] in the cache dtype
    labels: np.ndarray  # [samples] uint8
    zero_filled: tuple[str, ...]


def preprocess(
    electrodes: Mapping[str, np.ndarray],
    rate: float,
    n_samples: int,
    seizures: Sequence[tuple[float, float]],
    *,
    montage: str,
    missing_channels: str,
    sample_rate: int,
    bandpass_low: float,
    bandpass_high: float,
    bandpass_order: int,
    notch_freq: float,
    notch_q: float,
    clip: float,
    dtype: str,
) -> Processed:
    """The whole pipeline for one recording (keyword arguments are the ``preprocess`` config fields)."""
    x, zero_filled = select_channels(electrodes, n_samples, montage, missing_channels)
    x = resample_to(x, rate, sample_rate)
    sections = (bandpass_sos(sample_rate, bandpass_low, bandpass_high, bandpass_order),
                notch_sos(sample_rate, notch_freq, notch_q))  # fmt: skip
    shortest = filter_padding(*sections) + 1
    if x.shape[-1] < shortest:
        raise RecordingError(
            f"recording too short: {x.shape[-1] / sample_rate:g} s ({x.shape[-1]} samples at {sample_rate:g} Hz after "
            f"resampling); the zero-phase filters need at least {shortest} samples ({shortest / sample_rate:g} s)"
        )
    x = zero_phase(x, *sections)
    x = zscore_clip(x, clip)
    labels = label_mask(seizures, x.shape[-1], sample_rate)
    return Processed(eeg=to_dtype(x, dtype), labels=labels, zero_filled=zero_filled)
