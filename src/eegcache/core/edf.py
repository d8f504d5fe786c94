"""Read the EEG channels of one EDF recording with edfio, tolerant of TUH header quirks.

Only channels whose label names a known electrode (``EEG FP1-REF``, ``EEG FP1-LE``) are decoded;
other channels (EKG, PHOTIC, IBI/BURSTS/SUPPR at 1 Hz, ...) are ignored whatever their rate. Header
text (patient, recording fields) is never returned, so it cannot reach the cache.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import edfio
import numpy as np

from eegcache.core.montage import ELECTRODES, electrode_of
from eegcache.errors import RecordingError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EegSignals:
    electrodes: dict[str, np.ndarray]  # electrode name -> 1-D physical signal (µV), all at ``rate``
    rate: float  # Hz
    n_samples: int
    duration_s: float  # seconds of the recording (data records × record duration)


def read_eeg(path: Path) -> EegSignals:
    """The electrode signals of an EDF file; RecordingError naming the file when it cannot be used."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # latin-1 decodes any byte: TUH headers are not always ASCII, and we never keep header text anyway.
            edf = edfio.read_edf(path, lazy_load_data=True, header_encoding="latin-1")
            signals = [(electrode_of(s.label), s) for s in edf.signals]
            duration_s = float(edf.duration)
    except Exception as exc:  # noqa: BLE001 - any failure of the EDF parser on untrusted bytes means "not an EDF"
        raise RecordingError(f"not a readable EDF file ({type(exc).__name__}: {exc})", path) from exc
    for warning in caught:
        # edfio silently shortens a file whose data records end early; a cut recording must not pass as whole.
        if "data record" in str(warning.message):
            raise RecordingError(f"truncated EDF file ({warning.message})", path)
        log.warning("%s: %s", path, warning.message)
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
    unusable = sorted(r for r in rates if not (np.isfinite(r) and r > 0))
    if unusable:
        raise RecordingError(f"sampling rate {unusable[0]:g} Hz in the header is not a positive number", path)
    if len(rates) > 1:
        by_rate = ", ".join(f"{n} {s.sampling_frequency:g} Hz" for n, s in picked)
        raise RecordingError(f"mixed sampling rates among EEG channels: {by_rate}", path)
    try:
        electrodes = {name: np.asarray(s.data, dtype=np.float64) for name, s in picked}
    except Exception as exc:  # noqa: BLE001 - e.g. a truncated file whose records end early
        raise RecordingError(f"signal data unreadable ({type(exc).__name__}: {exc})", path) from exc
    # e.g. a "nan" physical range in the header: such a channel would otherwise reach the cache as silent zeros
    broken = [name for name, x in electrodes.items() if not np.isfinite(x).all()]
    if broken:
        raise RecordingError(f"non-finite samples in EEG channels {', '.join(broken)} (bad physical range?)", path)
    lengths = {len(x) for x in electrodes.values()}
    (rate,) = rates
    n_samples = lengths.pop()
    if lengths or n_samples == 0:
        raise RecordingError("EEG channels are empty or of different lengths", path)
    return EegSignals(electrodes=electrodes, rate=rate, n_samples=n_samples, duration_s=duration_s)
