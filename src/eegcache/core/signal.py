"""Preprocessing steps: pure functions of arrays and explicit parameters (numpy/scipy only).

Arrays are [channels, samples] or one channel's [samples]; rates are in Hz; times in seconds. The pipeline order, and
why:
select channels (fixed cache order) -> resample (polyphase, with its own anti-alias filter; every later
step then runs on fewer samples) -> band-pass and notch (zero-phase SOS, so seizure onsets do not shift)
-> per-channel z-score with clipping (statistics of the filtered signal) -> cast to the cache dtype.

The shortest recording the pipeline accepts is set by the zero-phase filters, not by any training window
(windows are chosen at read time, and the dataset leaves out recordings shorter than one window): after
resampling it must be longer than the filters' edge padding (:func:`filter_padding`; 33 samples, 0.165 s at
200 Hz with the default band-pass and notch). A shorter one is a RecordingError, like any other unusable recording.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from scipy import signal as sps

from eegcache.core.montage import TCP_BIPOLAR, TEN_TWENTY
from eegcache.errors import RecordingError

# float64 samples formed per block of channels in preprocess: 32 MiB, one channel of 3 h at 256 Hz (2.8 M) or of
# 1 h at 1000 Hz (3.6 M) alone, a 20-minute recording at 256 Hz whole. Larger blocks only save per-call overhead.
BLOCK_SAMPLES = 4 * 2**20
_MAX_RATIO_DENOMINATOR = 1000  # 256 -> 200 Hz is 25/32, 512 -> 200 is 25/64; anything finer is not a real EEG rate


def montage_channels(montage: str) -> tuple[tuple[str, ...], ...]:
    """The electrodes each channel of ``montage`` is formed from, in cache order: ``ref19`` one electrode per
    channel (``(FP1,)``), ``tcp22`` the two of each TCP bipolar derivation (``(FP1, F7)`` = FP1 - F7)."""
    if montage == "ref19":
        return tuple((name,) for name in TEN_TWENTY)
    if montage == "tcp22":
        return TCP_BIPOLAR
    raise ValueError(f"unknown montage {montage!r}")


def plan_channels(
    available: Collection[str], montage: str, missing: str, why: Mapping[str, str] | None = None
) -> tuple[tuple[tuple[str, ...] | None, ...], tuple[str, ...]]:
    """-> (per cache channel its electrodes, or None where one is absent and the channel is zero-filled; the names
    of the zero-filled channels). ``missing`` = ``error`` raises on an absent electrode instead, naming it and, from
    ``why`` (electrode -> reason), why a present one is unusable."""
    wanted = montage_channels(montage)
    absent = sorted({e for channel in wanted for e in channel if e not in available})
    if absent and missing == "error":
        named = ", ".join(f"{e} ({why[e]})" if why and e in why else e for e in absent)
        raise RecordingError(f"required channels missing: {named} (preprocess.missing_channels=error)")
    rows = tuple(None if any(e not in available for e in channel) else channel for channel in wanted)
    zero_filled = tuple("-".join(channel) for channel, row in zip(wanted, rows) if row is None)
    return rows, zero_filled


def form_channel(electrodes: Mapping[str, np.ndarray], channel: tuple[str, ...]) -> np.ndarray:
    """One channel (1-D, µV) from its electrodes: the electrode itself, or the difference of a bipolar pair."""
    if len(channel) == 1:
        return electrodes[channel[0]]
    return electrodes[channel[0]] - electrodes[channel[1]]


def select_channels(
    electrodes: Mapping[str, np.ndarray], n_samples: int, montage: str, missing: str
) -> tuple[np.ndarray, tuple[str, ...]]:
    """All of the montage's channels stacked in cache order -> ([channels, n_samples] float64, zero-filled names).

    The whole-recording form of :func:`plan_channels` and :func:`form_channel` (for analysis; :func:`preprocess`
    forms one channel at a time). ``electrodes`` maps electrode names (``FP1``) to 1-D signals in µV.
    """
    rows, zero_filled = plan_channels(electrodes.keys(), montage, missing)
    out = np.zeros((len(rows), n_samples), dtype=np.float64)
    for row, channel in enumerate(rows):
        if channel is not None:
            out[row] = form_channel(electrodes, channel)
    return out, zero_filled


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
    unusable: Mapping[str, str] | None = None,
) -> Processed:
    """The whole pipeline for one recording (keyword arguments are the ``preprocess`` config fields; ``unusable``:
    electrode -> why it is left out of ``electrodes``, for the message when ``missing_channels`` is ``error``).

    A block of channels at a time (at most :data:`BLOCK_SAMPLES` input samples, at least one channel: formed,
    resampled, filtered, z-scored, cast into its rows of the output), so memory holds the output and a few blocks'
    worth of float64, never the whole recording in float64. ``electrodes`` may read each electrode on demand
    (:class:`eegcache.core.edf.Electrodes`). Every step acts on each channel alone, so the result is the same, bit
    for bit, whatever the block size (tests/unit/core/test_signal.py compares it with all channels in one block).
    """
    rows, zero_filled = plan_channels(electrodes.keys(), montage, missing_channels, unusable)
    ratio = resample_ratio(rate, sample_rate)
    n_out = -(-n_samples * ratio.numerator // ratio.denominator)  # resample_poly's ceil(n · up / down)
    sections = (bandpass_sos(sample_rate, bandpass_low, bandpass_high, bandpass_order),
                notch_sos(sample_rate, notch_freq, notch_q))  # fmt: skip
    shortest = filter_padding(*sections) + 1
    if n_out < shortest:
        raise RecordingError(
            f"recording too short: {n_out / sample_rate:g} s ({n_out} samples at {sample_rate:g} Hz after "
            f"resampling); the zero-phase filters need at least {shortest} samples ({shortest / sample_rate:g} s)"
        )
    eeg = np.zeros((len(rows), n_out), dtype=dtype)  # zero-filled rows stay +0.0, as z-scoring a zero row gives
    present = [row for row, channel in enumerate(rows) if channel is not None]
    per_block = max(1, BLOCK_SAMPLES // n_samples)
    for block in (present[i : i + per_block] for i in range(0, len(present), per_block)):
        x = np.empty((len(block), n_samples))
        for i, row in enumerate(block):
            x[i] = form_channel(electrodes, rows[row])
        x = resample_to(x, rate, sample_rate)
        with np.errstate(over="ignore", invalid="ignore"):  # reported below, naming the channels
            x = zscore_clip(zero_phase(x, *sections), clip)
        broken = [rows[row] for row, finite in zip(block, np.isfinite(x).all(axis=1)) if not finite]
        if broken:  # finite µV values too large for float64 statistics (a calibration of 1e300 µV): not a signal
            names = ", ".join("-".join(channel) for channel in broken)
            raise RecordingError(f"non-finite values after preprocessing channel(s) {names}: their samples (from the "
                                 "header's calibration) are too large to filter and z-score")  # fmt: skip
        eeg[block] = x
    return Processed(eeg=eeg, labels=label_mask(seizures, n_out, sample_rate), zero_filled=zero_filled)
