"""Read the EEG channels of one EDF recording with edfio, tolerant of TUH header quirks.

Only channels whose label names a known electrode (``EEG FP1-REF``, ``EEG FP1-LE``) are decoded;
other channels (EKG, PHOTIC, IBI/BURSTS/SUPPR at 1 Hz, ...) are ignored whatever their rate. Header
text (patient, recording fields) is never returned, so it cannot reach the cache.

The header is checked first (:mod:`eegcache.core.edfheader`: BDF, unknown record count, data longer or shorter than
the header, EDF+D gaps), then each EEG channel's calibration. An electrode whose physical or digital minimum equals
its maximum carries no calibrated signal (edfio would return its raw integers): it is treated as absent, like an
electrode the recording does not have, so ``preprocess.missing_channels`` decides (``zero``: zero-filled and listed
in the entry's ``zero_filled``; ``error``: the recording is refused naming the electrode and why).

Samples are read one electrode at a time, on demand (:attr:`EegSignals.electrodes` is a lazy mapping over edfio's
memory-mapped data records), so a recording is never held whole in float64. Every warning edfio raises becomes a
RecordingError naming the file: nothing it would do silently to the data passes.
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import edfio
import numpy as np

from eegcache.core import edfheader
from eegcache.core.montage import ELECTRODES, electrode_of
from eegcache.errors import RecordingError

log = logging.getLogger(__name__)

_DIGITAL_EXTREMES = np.array([-32768, 32767], dtype=np.int16)  # every 16-bit sample lies between these


class Electrodes(Mapping[str, np.ndarray]):
    """Electrode name -> its 1-D physical signal (float64, µV), read from the file each time it is looked up."""

    def __init__(self, path: Path, signals: Mapping[str, edfio.EdfSignal], n_samples: int):
        self._path = path
        self._signals = dict(signals)
        self._n_samples = n_samples

    def __getitem__(self, name: str) -> np.ndarray:
        signal = self._signals[name]
        with edfio_errors(self._path, f"reading EEG channel {name}"):
            # a slice, not ``signal.data``: edfio keeps a loaded signal's samples, which would hold them all
            return signal.get_data_slice(0, self._n_samples / signal.sampling_frequency)

    def __contains__(self, name: object) -> bool:  # Mapping's would read the samples to answer
        return name in self._signals

    def __iter__(self) -> Iterator[str]:
        return iter(self._signals)

    def __len__(self) -> int:
        return len(self._signals)


@dataclass(frozen=True)
class EegSignals:
    electrodes: Mapping[str, np.ndarray]  # electrode name -> 1-D physical signal (µV), all at ``rate``
    rate: float  # Hz
    n_samples: int
    duration_s: float  # seconds of the recording (data records × record duration)
    unusable: dict[str, str] = field(default_factory=dict)  # electrode -> why it holds no signal (left out)


@contextlib.contextmanager
def edfio_errors(path: Path, doing: str) -> Iterator[None]:
    """Run edfio: its warnings and exceptions become a RecordingError naming ``path`` (nothing escapes bare)."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    except RecordingError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of the EDF parser on untrusted bytes means "not an EDF"
        raise RecordingError(f"not a readable EDF file ({doing}: {type(exc).__name__}: {exc})", path) from exc
    if caught:
        messages = "; ".join(dict.fromkeys(str(w.message) for w in caught))
        raise RecordingError(f"EDF reader warning ({doing}): {messages}", path)


def read_eeg(path: Path) -> EegSignals:
    """The electrode signals of an EDF file; RecordingError naming the file when it cannot be used."""
    edfheader.check(path)
    with edfio_errors(path, "reading the header"):
        # latin-1 decodes any byte: TUH headers are not always ASCII, and we never keep header text anyway.
        edf = edfio.read_edf(path, lazy_load_data=True, header_encoding="latin-1")
        signals = [(electrode_of(s.label), s) for s in edf.signals]
        duration_s = float(edf.duration)
    picked = [(name, s) for name, s in signals if name in ELECTRODES]
    if not picked:
        raise RecordingError("no EEG channels (no label like 'EEG FP1-REF')", path)
    names = [name for name, _ in picked]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise RecordingError(f"duplicated EEG channels: {', '.join(duplicated)}", path)
    if not (np.isfinite(duration_s) and duration_s > 0):
        raise RecordingError(f"recording duration {duration_s:g} s in the header is not a positive number", path)
    rates = {float(s.sampling_frequency) for _, s in picked}
    unusable_rates = sorted(r for r in rates if not (np.isfinite(r) and r > 0))
    if unusable_rates:
        raise RecordingError(f"sampling rate {unusable_rates[0]:g} Hz in the header is not a positive number", path)
    if len(rates) > 1:
        by_rate = ", ".join(f"{n} {s.sampling_frequency:g} Hz" for n, s in picked)
        raise RecordingError(f"mixed sampling rates among EEG channels: {by_rate}", path)
    (rate,) = rates
    n_samples = edf.num_data_records * picked[0][1].samples_per_data_record
    if n_samples == 0:
        raise RecordingError("EEG channels are empty", path)
    unusable = {name: why for name, s in picked if (why := uncalibrated(path, name, s))}
    usable = {name: s for name, s in picked if name not in unusable}
    if not usable:  # nothing would be left but zero-filled channels
        reasons = "; ".join(f"{name}: {why}" for name, why in unusable.items())
        raise RecordingError(f"no EEG channel has a calibration ({reasons})", path)
    return EegSignals(Electrodes(path, usable, n_samples), rate, n_samples, duration_s, unusable)


def uncalibrated(path: Path, name: str, signal: edfio.EdfSignal) -> str | None:
    """Why electrode ``name`` has no calibration (a constant physical or digital range), or None when it has one;
    RecordingError for a range edfio would not apply (not numbers) or that gives non-finite samples."""
    try:
        physical = (signal.physical_min, signal.physical_max)
        digital = (signal.digital_min, signal.digital_max)
    except ValueError as exc:  # edfio would then return the raw integers without a word
        raise RecordingError(f"EEG channel {name}: calibration in the header is not a number ({exc})", path) from None
    if digital[0] == digital[1]:
        return f"digital minimum equals maximum ({digital[0]}): no calibration"
    if physical[0] == physical[1]:
        return f"physical minimum equals maximum ({physical[0]:g}): no calibration"
    # edfio's calibration, (digital + offset) * gain, at both ends of the 16-bit range: finite there, finite for all
    gain = (physical[1] - physical[0]) / (digital[1] - digital[0])
    offset = physical[1] / gain - digital[1] if math.isfinite(gain) and gain else math.nan
    with np.errstate(all="ignore"):
        extremes = (_DIGITAL_EXTREMES + offset) * gain
    if not np.isfinite(extremes).all():
        raise RecordingError(f"non-finite samples in EEG channels {name} (physical range {physical[0]:g} to "
                             f"{physical[1]:g}, digital range {digital[0]} to {digital[1]})", path)  # fmt: skip
    return None
