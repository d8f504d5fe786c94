import numpy as np
import pytest
from edfio import Edf, EdfSignal
from numpy.testing import assert_allclose

from eegcache.core import edf
from eegcache.errors import RecordingError


def write(path, channels, seconds=10):
    """channels: [(label, rate, value-function)]; 1 s data records."""
    signals = []
    for label, rate, fn in channels:
        t = np.arange(int(seconds * rate)) / rate
        signals.append(EdfSignal(fn(t), rate, label=label, physical_dimension="uV", physical_range=(-500, 500)))
    Edf(signals).write(path)
    return path


def tone(freq, amp=100.0):
    return lambda t: amp * np.sin(2 * np.pi * freq * t)


def test_reads_electrodes_and_ignores_other_channels(tmp_path):
    path = write(tmp_path / "a.edf", [
        ("EEG FP1-REF", 256, tone(10)), ("EEG CZ-REF", 256, tone(5, 50)), ("EEG EKG1-REF", 256, tone(1)),
        ("PHOTIC-REF", 256, tone(2)), ("IBI", 1, lambda t: t), ("BURSTS", 1, lambda t: t),
    ])  # fmt: skip
    sig = edf.read_eeg(path)
    assert sorted(sig.electrodes) == ["CZ", "FP1"]
    assert sig.rate == 256 and sig.n_samples == 2560 and sig.duration_s == 10
    t = np.arange(2560) / 256
    assert_allclose(sig.electrodes["FP1"], 100 * np.sin(2 * np.pi * 10 * t), atol=0.05)


def test_linked_ear_labels_are_recognised(tmp_path):
    path = write(tmp_path / "le.edf", [("EEG FP1-LE", 250, tone(10)), ("EEG A1-LE", 250, tone(3))])
    assert sorted(edf.read_eeg(path).electrodes) == ["A1", "FP1"]


def test_random_bytes_named_edf(tmp_path):
    path = tmp_path / "junk.edf"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(RecordingError, match=r"junk\.edf: not a readable EDF file"):
        edf.read_eeg(path)


def test_truncated_edf(tmp_path):
    path = write(tmp_path / "cut.edf", [("EEG FP1-REF", 256, tone(10)), ("EEG F7-REF", 256, tone(8))])
    path.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(RecordingError, match=r"cut\.edf"):
        edf.read_eeg(path)


def test_no_eeg_channels(tmp_path):
    path = write(tmp_path / "ekg.edf", [("EEG EKG1-REF", 256, tone(1)), ("PHOTIC-REF", 256, tone(2))])
    with pytest.raises(RecordingError, match="no EEG channels"):
        edf.read_eeg(path)


def test_mixed_eeg_rates(tmp_path):
    path = write(tmp_path / "mixed.edf", [("EEG FP1-REF", 256, tone(10)), ("EEG FP2-REF", 512, tone(10))])
    with pytest.raises(RecordingError, match="mixed sampling rates among EEG channels: FP1 256 Hz, FP2 512 Hz"):
        edf.read_eeg(path)


def test_duplicated_electrode(tmp_path):
    path = write(tmp_path / "dup.edf", [("EEG FP1-REF", 256, tone(10)), ("EEG FP1-LE", 256, tone(10))])
    with pytest.raises(RecordingError, match="duplicated EEG channels: FP1"):
        edf.read_eeg(path)


def test_missing_file(tmp_path):
    with pytest.raises(RecordingError, match="nope.edf"):
        edf.read_eeg(tmp_path / "nope.edf")


def header_field(path, offset, width, text):
    """Overwrite one fixed-width ASCII header field (offsets of the EDF spec)."""
    data = bytearray(path.read_bytes())
    data[offset : offset + width] = text.ljust(width).encode()
    path.write_bytes(bytes(data))
    return path


RECORD_DURATION = (244, 8)  # seconds per data record
PHYSICAL_MIN_1 = (256 + 2 * (16 + 80 + 8), 8)  # physical minimum of the first of 2 signals


@pytest.mark.parametrize(
    ("field", "text", "reason"),
    [(RECORD_DURATION, "-1", "recording duration -10 s in the header is not a positive number"),
     (RECORD_DURATION, "1e308", "recording duration inf s in the header is not a positive number"),
     (PHYSICAL_MIN_1, "nan", "non-finite samples in EEG channels FP1")],
    ids=["negative record duration", "huge record duration", "nan physical minimum"],
)  # fmt: skip
def test_header_numbers_that_edfio_accepts_but_make_no_recording(tmp_path, field, text, reason):
    """edfio reads these without complaint: a negative or huge record duration gives a negative rate or an infinite
    duration, a "nan" physical range gives NaN samples (which z-scoring would silently turn into a zero channel)."""
    path = write(tmp_path / "odd.edf", [("EEG FP1-REF", 256, tone(10)), ("EEG F7-REF", 256, tone(8))])
    header_field(path, *field, text)
    with pytest.raises(RecordingError, match=r"odd\.edf: ") as err:
        edf.read_eeg(path)
    assert reason in err.value.reason
