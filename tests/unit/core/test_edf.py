import warnings
from decimal import Decimal

import edfio
import numpy as np
import pytest
from edfio import Bdf, BdfSignal, Edf, EdfAnnotation, EdfSignal
from numpy.testing import assert_allclose

from eegcache.core import edf, edfheader
from eegcache.core.montage import electrode_of
from eegcache.errors import RecordingError

# No warning may escape the reader bare: every one must have become a RecordingError naming the file.
pytestmark = pytest.mark.filterwarnings("error")


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
    path = write(
        tmp_path / "a.edf",
        [
            ("EEG FP1-REF", 256, tone(10)),
            ("EEG CZ-REF", 256, tone(5, 50)),
            ("EEG EKG1-REF", 256, tone(1)),
            ("PHOTIC-REF", 256, tone(2)),
            ("IBI", 1, lambda t: t),
            ("BURSTS", 1, lambda t: t),
        ],
    )
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
    with pytest.raises(
        RecordingError,
        match=r"cut\.edf: file ends after 2 of 10 data records and 184 bytes of the "
        r"next \(truncated\)",
    ):
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
    [
        (RECORD_DURATION, "-1", "data record duration -1 s in the header is not positive"),
        (RECORD_DURATION, "0", "data record duration 0 s in the header is not positive"),
        (RECORD_DURATION, "1e308", "recording duration inf s in the header is not a positive number"),
        (PHYSICAL_MIN_1, "nan", "non-finite samples in EEG channels FP1"),
    ],
    ids=["negative record duration", "zero record duration", "huge record duration", "nan physical minimum"],
)
def test_header_numbers_that_edfio_accepts_but_make_no_recording(tmp_path, field, text, reason):
    """edfio reads these without complaint: a negative or huge record duration gives a negative rate or an infinite
    duration, a "nan" physical range gives NaN samples (which z-scoring would silently turn into a zero channel)."""
    path = write(tmp_path / "odd.edf", [("EEG FP1-REF", 256, tone(10)), ("EEG F7-REF", 256, tone(8))])
    header_field(path, *field, text)
    with pytest.raises(RecordingError, match=r"odd\.edf: ") as err:
        edf.read_eeg(path)
    assert reason in err.value.reason


# --- what edfio reads without a word, named for what it is (issue 13) ----------------------------------------

TWO = [("EEG FP1-REF", 256, tone(10)), ("EEG F7-REF", 256, tone(8))]  # 10 records of 2 × 256 samples: 1024 bytes each
HEADER = 256 * 3


def test_a_bdf_file_named_edf(tmp_path):
    """24-bit BDF read as EDF would give 1.5× the records of garbage; edfio only warned the header disagrees."""
    t = np.arange(2560) / 256
    Bdf([BdfSignal(100 * np.sin(t), 256, label="EEG FP1-REF", physical_range=(-500, 500))]).write(tmp_path / "b.edf")
    with pytest.raises(RecordingError) as err:
        edf.read_eeg(tmp_path / "b.edf")
    assert str(err.value) == f"{tmp_path / 'b.edf'}: BDF file (24-bit samples, version field 0xFF 'BIOSEMI'), not EDF"


def test_a_record_count_of_minus_one(tmp_path):
    path = header_field(write(tmp_path / "rec.edf", TWO), 236, 8, "-1")
    with pytest.raises(RecordingError) as err:
        edf.read_eeg(path)
    assert err.value.reason == "header gives -1 data records (unknown, written by a recorder that did not finish)"


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        (b"\0" * 1024, "file has 1024 bytes more than its header's 10 data records of 1024 bytes"),
        (b"\0" * 7, "file has 7 bytes more than its header's 10 data records of 1024 bytes"),
    ],
)
def test_data_longer_than_the_header_says(tmp_path, extra, reason):
    path = write(tmp_path / "long.edf", TWO)
    path.write_bytes(path.read_bytes() + extra)
    with pytest.raises(RecordingError) as err:
        edf.read_eeg(path)
    assert (err.value.path, err.value.reason) == (str(path), reason)


@pytest.mark.parametrize(
    ("cut", "reason"),
    [
        (1024, "file ends after 9 of 10 data records (truncated)"),
        (1024 * 7 + 100, "file ends after 2 of 10 data records and 924 bytes of the next (truncated)"),
        (1024 * 10, "file ends after 0 of 10 data records (truncated)"),
    ],
)
def test_data_shorter_than_the_header_says(tmp_path, cut, reason):
    path = write(tmp_path / "short.edf", TWO)
    path.write_bytes(path.read_bytes()[:-cut])
    with pytest.raises(RecordingError) as err:
        edf.read_eeg(path)
    assert (err.value.path, err.value.reason) == (str(path), reason)


@pytest.mark.parametrize(
    ("size", "reason"),
    [
        (100, "not a readable EDF file (100 bytes: shorter than the 256-byte header)"),
        (500, "not a readable EDF file (file ends after 500 bytes, inside the 768-byte header of 2 signals)"),
    ],
)
def test_a_file_that_ends_in_its_header(tmp_path, size, reason):
    path = write(tmp_path / "cut.edf", TWO)
    path.write_bytes(path.read_bytes()[:size])
    with pytest.raises(RecordingError) as err:
        edf.read_eeg(path)
    assert err.value.reason == reason


def as_edf_plus_d(path, first=None, by=0):
    """Turn the EDF+C file ``path`` (edfio writes EDF+C when there are annotations) into EDF+D, the time-keeping
    onset of each data record from ``first`` on moved ``by`` seconds later."""
    header = edfheader.check(path)
    assert header.reserved == "EDF+C" and header.labels[-1] == edfheader.ANNOTATION_LABEL
    data = bytearray(path.read_bytes())
    data[192:197] = b"EDF+D"
    record, width = 2 * sum(header.samples_per_record), 2 * header.samples_per_record[-1]
    for k in range(header.records if first is None else first, header.records):
        at = header.header_bytes + k * record + record - width
        tal = data[at : at + width]
        assert tal.startswith(f"+{k}\x14\x14".encode())
        data[at : at + width] = tal.replace(f"+{k}\x14\x14".encode(), f"+{k + by}\x14\x14".encode(), 1)[:width]
    path.write_bytes(bytes(data))
    return path


def edf_plus(path, first=None, by=0):
    """A 10 s EDF+D file of two EEG channels, its records from ``first`` on ``by`` seconds late."""
    t = np.arange(2560) / 256
    signals = [
        EdfSignal(100 * np.sin(t * k), 256, label=label, physical_range=(-500, 500))
        for k, label in enumerate(["EEG FP1-REF", "EEG F7-REF"], 1)
    ]
    Edf(signals, annotations=[EdfAnnotation(1.0, None, "eyes closed")]).write(path)
    return as_edf_plus_d(path, first, by)


def test_edf_plus_d_with_gaps_is_refused_with_the_gap_times(tmp_path):
    path = edf_plus(tmp_path / "gappy.edf", 6, 10)
    with pytest.raises(RecordingError) as err:
        edf.read_eeg(path)
    assert err.value.reason == (
        "EDF+D (discontinuous) recording with 1 gap(s) between data records: 10 s at 6 s; "
        "the cache needs one continuous signal"
    )


def test_edf_plus_d_with_records_out_of_order_is_refused(tmp_path):
    path = edf_plus(tmp_path / "back.edf", 9, -3)
    with pytest.raises(RecordingError, match=r"1 gap\(s\) between data records: -3 s at 9 s"):
        edf.read_eeg(path)


def test_edf_plus_d_without_gaps_reads_as_continuous(tmp_path):
    sig = edf.read_eeg(edf_plus(tmp_path / "whole.edf"))
    assert sorted(sig.electrodes) == ["F7", "FP1"] and sig.n_samples == 2560


def test_gaps_between_record_onsets():
    d = Decimal
    assert edfheader.gaps([d(0), d(1), d(2)], d(1)) == []
    assert edfheader.gaps([d(0), d("0.5"), d(11), d("11.5")], d("0.5")) == [(d(1), d(10))]


PHYSICAL = {"min": 256 + 2 * 104, "max": 256 + 2 * 112}  # of signal 0 of 2
DIGITAL = {"min": 256 + 2 * 120, "max": 256 + 2 * 128}


@pytest.mark.parametrize(
    ("field", "text", "why"),
    [
        (PHYSICAL["max"], "-500", "physical minimum equals maximum (-500): no calibration"),
        (DIGITAL["max"], "-32768", "digital minimum equals maximum (-32768): no calibration"),
    ],
)
def test_an_electrode_without_calibration_is_left_out_as_missing(tmp_path, field, text, why):
    """edfio would return its raw integers as µV (with a bare UserWarning, an error here: warnings are errors)."""
    path = header_field(write(tmp_path / "flat.edf", TWO), field, 8, text)
    sig = edf.read_eeg(path)
    assert sig.unusable == {"FP1": why}
    assert list(sig.electrodes) == ["F7"] and "FP1" not in sig.electrodes


def test_a_recording_whose_every_electrode_lacks_calibration(tmp_path):
    path = write(tmp_path / "flat.edf", TWO)
    header_field(path, PHYSICAL["max"], 8, "-500")
    header_field(path, 256 + 2 * 112 + 8, 8, "-500")  # physical maximum of signal 1
    with pytest.raises(RecordingError) as err:
        edf.read_eeg(path)
    assert err.value.reason == (
        "no EEG channel has a calibration (FP1: physical minimum equals maximum (-500): no "
        "calibration; F7: physical minimum equals maximum (-500): no calibration)"
    )


@pytest.mark.parametrize("text", ["abc", "1e999"])
def test_a_calibration_that_is_not_a_number(tmp_path, text):
    """edfio catches these itself and returns raw integers without any warning."""
    path = header_field(write(tmp_path / "odd.edf", TWO), PHYSICAL["min"], 8, text)
    with pytest.raises(RecordingError, match=r"odd\.edf: EEG channel FP1: calibration in the header is not a number"):
        edf.read_eeg(path)


def test_electrodes_are_read_on_demand_with_edfios_calibration(tmp_path):
    path = write(tmp_path / "a.edf", TWO + [("ECG", 256, tone(1))])
    sig = edf.read_eeg(path)
    whole = {electrode_of(s.label): s.data for s in edfio.read_edf(path).signals}
    for name in ("FP1", "F7"):
        np.testing.assert_array_equal(sig.electrodes[name], whole[name])
    assert sig.electrodes["FP1"] is not sig.electrodes["FP1"]  # read anew each time: nothing is held


def test_edfio_warnings_become_recording_errors_naming_the_file(tmp_path):
    with pytest.raises(RecordingError) as err, edf.edfio_errors(tmp_path / "w.edf", "reading EEG channel FP1"):
        warnings.warn("Something edfio did to the data", UserWarning, stacklevel=1)
    assert (
        str(err.value) == f"{tmp_path / 'w.edf'}: EDF reader warning (reading EEG channel FP1): Something edfio "
        "did to the data"
    )
