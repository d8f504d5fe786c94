import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy.signal import sosfiltfilt

from eegcache.core import signal
from eegcache.core.montage import TCP_BIPOLAR, TEN_TWENTY
from eegcache.errors import RecordingError

RATE = 200.0


def sine(freq, rate=RATE, seconds=20.0, amplitude=1.0):
    t = np.arange(int(seconds * rate)) / rate
    return amplitude * np.sin(2 * np.pi * freq * t)


def rms(x):
    return float(np.sqrt(np.mean(np.square(x))))


def middle(x, rate=RATE, margin_s=3.0):
    m = int(margin_s * rate)
    return x[..., m:-m]


def test_bandpass_keeps_passband_sine_amplitude():
    x = sine(10.0, amplitude=50.0)[None, :]
    y = signal.zero_phase(x, signal.bandpass_sos(RATE, 0.5, 80.0, 4))
    assert_allclose(rms(middle(y)), rms(middle(x)), rtol=0.01)


@pytest.mark.parametrize("freq", [0.05, 95.0])
def test_bandpass_removes_stopband_sine(freq):
    x = sine(freq, seconds=60.0)[None, :]
    y = signal.zero_phase(x, signal.bandpass_sos(RATE, 0.5, 80.0, 4))
    assert rms(middle(y, margin_s=10)) < 0.02 * rms(x)


def test_bandpass_is_zero_phase():
    x = sine(10.0)[None, :]
    y = signal.zero_phase(x, signal.bandpass_sos(RATE, 0.5, 80.0, 4))
    lag = np.argmax(np.correlate(middle(y)[0], middle(x)[0], mode="full")) - (middle(x).shape[-1] - 1)
    assert lag == 0


def test_notch_removes_line_noise_and_keeps_alpha():
    alpha, line = sine(10.0), sine(60.0)
    y = signal.zero_phase((alpha + line)[None, :], signal.notch_sos(RATE, 60.0, 30.0))
    assert_allclose(middle(y)[0], middle(alpha), atol=0.02)


def test_cascade_of_bandpass_and_notch_does_both():
    x = (sine(10.0) + sine(60.0) + sine(0.05, seconds=20.0))[None, :]
    y = signal.zero_phase(x, signal.bandpass_sos(RATE, 0.5, 80.0, 4), signal.notch_sos(RATE, 60.0, 30.0))
    assert_allclose(middle(y, margin_s=6)[0], middle(sine(10.0), margin_s=6), atol=0.05)


def test_notch_zero_frequency_is_identity():
    x = sine(60.0)[None, :]
    assert signal.zero_phase(x, signal.notch_sos(RATE, 0.0, 30.0)) is x


@pytest.mark.parametrize("source_rate", [250.0, 256.0, 400.0, 512.0])
def test_resample_keeps_tone_frequency_and_length(source_rate):
    x = sine(7.0, rate=source_rate, seconds=30.0)[None, :]
    y = signal.resample_to(x, source_rate, 200.0)
    assert y.shape[-1] == int(np.ceil(x.shape[-1] * 200.0 / source_rate))
    spectrum = np.abs(np.fft.rfft(y[0]))
    freqs = np.fft.rfftfreq(y.shape[-1], 1 / 200.0)
    assert freqs[np.argmax(spectrum)] == pytest.approx(7.0, abs=0.05)
    assert_allclose(rms(middle(y)), rms(middle(x, rate=source_rate)), rtol=0.01)


@pytest.mark.parametrize("bad_rate", [100.0, 199.0, 250.0001, float("nan")])
def test_resample_rejects_unusable_rates(bad_rate):
    with pytest.raises(RecordingError, match="unsupported sampling rate"):
        signal.resample_ratio(bad_rate, 200.0)


def electrodes(n=1000, names=TEN_TWENTY + ("A1", "A2")):
    return {name: np.full(n, float(i + 1)) for i, name in enumerate(names)}


def test_select_ref19_keeps_fixed_order():
    x, zero = signal.select_channels(electrodes(), 1000, "ref19", "error")
    assert x.shape == (19, 1000) and zero == ()
    assert_allclose(x[:, 0], [TEN_TWENTY.index(n) + 1 for n in TEN_TWENTY])


def test_select_tcp22_forms_bipolar_differences():
    e = electrodes()
    x, _ = signal.select_channels(e, 1000, "tcp22", "error")
    assert x.shape == (22, 1000)
    expected = [e[a][0] - e[b][0] for a, b in TCP_BIPOLAR]
    assert_allclose(x[:, 0], expected)


def test_missing_channels_error_names_them():
    e = electrodes(names=tuple(n for n in TEN_TWENTY if n not in ("FZ", "PZ")))
    with pytest.raises(RecordingError, match="FZ, PZ"):
        signal.select_channels(e, 1000, "ref19", "error")


def test_missing_channels_zero_fills_and_records():
    e = electrodes(names=TEN_TWENTY)  # no A1/A2, as under 03_tcp_ar_a
    x, zero = signal.select_channels(e, 1000, "tcp22", "zero")
    assert zero == ("A1-T3", "T4-A2")
    rows = [f"{a}-{b}" for a, b in TCP_BIPOLAR]
    assert not x[rows.index("A1-T3")].any() and not x[rows.index("T4-A2")].any()
    assert x[rows.index("FP1-F7")].any()


def test_zscore_clip_normalises_each_channel_and_keeps_flat_zero():
    rng = np.random.default_rng(0)
    x = np.vstack([rng.normal(5.0, 3.0, 10000), np.zeros(10000), rng.normal(0, 1, 10000)])
    x[2, 100] = 1000.0  # an artefact
    y = signal.zscore_clip(x, 10.0)
    assert_allclose(y[0].mean(), 0.0, atol=1e-9)
    assert_allclose(y[0].std(), 1.0, rtol=1e-9)
    assert not y[1].any()
    assert y[2, 100] == 10.0 and y.max() <= 10.0 and y.min() >= -10.0


def test_label_mask_lands_on_the_right_samples():
    mask = signal.label_mask([(1.0, 2.5), (4.02, 4.03)], 1000, 200.0)
    assert mask.dtype == np.uint8
    assert np.flatnonzero(mask).tolist() == list(range(200, 500)) + [804, 805]


def test_label_mask_clips_to_the_signal():
    mask = signal.label_mask([(0.0, 100.0)], 50, 200.0)
    assert mask.sum() == 50


def test_preprocess_outputs_cache_dtype_and_aligned_labels():
    n = int(256 * 30)
    e = {name: sine(10.0, rate=256.0, seconds=30.0, amplitude=20.0) for name in TEN_TWENTY}
    out = signal.preprocess(
        e,
        256.0,
        n,
        [(10.0, 20.0)],
        montage="ref19",
        missing_channels="error",
        sample_rate=200,
        bandpass_low=0.5,
        bandpass_high=80.0,
        bandpass_order=4,
        notch_freq=60.0,
        notch_q=30.0,
        clip=10.0,
        dtype="float16",
    )
    assert out.eeg.dtype == np.float16 and out.eeg.shape == (19, 6000)
    assert out.labels.shape == (6000,) and out.labels.sum() == 2000 and out.labels[2000] == 1
    assert_allclose(np.asarray(out.eeg[0, 600:-600], dtype=np.float64).std(), 1.0, rtol=0.05)


PREPROCESS = dict(
    montage="ref19",
    missing_channels="zero",
    sample_rate=200,
    bandpass_low=0.5,
    bandpass_high=80.0,
    bandpass_order=4,
    notch_freq=60.0,
    notch_q=30.0,
    clip=10.0,
    dtype="float16",
)


def test_filter_padding_is_scipys_default_padlen():
    sections = (signal.bandpass_sos(RATE, 0.5, 80.0, 4), signal.notch_sos(RATE, 60.0, 30.0))
    assert signal.filter_padding(*sections) == 33
    x = np.random.default_rng(0).standard_normal((2, 34))
    assert_allclose(signal.zero_phase(x, *sections), sosfiltfilt(np.vstack(sections), x, axis=-1))
    with pytest.raises(RecordingError, match="too short to filter: 33 samples"):
        signal.zero_phase(x[:, :33], *sections)


@pytest.mark.parametrize(
    ("source_rate", "n", "ok"), [(250.0, 41, False), (250.0, 42, True), (200.0, 33, False), (200.0, 34, True)]
)
def test_preprocess_rejects_a_recording_too_short_to_filter(source_rate, n, ok):
    """The shortest accepted recording is 34 samples at 200 Hz after resampling (41 at 250 Hz gives 33, 42 gives 34):
    a RecordingError saying so, never scipy's ValueError."""
    electrodes = {"FP1": np.sin(np.arange(n) / 3.0)}
    if ok:
        assert signal.preprocess(electrodes, source_rate, n, [], **PREPROCESS).eeg.shape == (19, 34)
    else:
        with pytest.raises(
            RecordingError,
            match=r"recording too short: 0\.165 s \(33 samples at 200 Hz after "
            r"resampling\); the zero-phase filters need at least 34 samples",
        ):
            signal.preprocess(electrodes, source_rate, n, [], **PREPROCESS)


def whole_array(electrodes, rate, n, seizures, **p):
    """The pipeline as it ran before issue 13: every channel stacked in one float64 array through every step."""
    x, zero_filled = signal.select_channels(electrodes, n, p["montage"], p["missing_channels"])
    x = signal.resample_to(x, rate, p["sample_rate"])
    sections = (
        signal.bandpass_sos(p["sample_rate"], p["bandpass_low"], p["bandpass_high"], p["bandpass_order"]),
        signal.notch_sos(p["sample_rate"], p["notch_freq"], p["notch_q"]),
    )
    x = signal.zscore_clip(signal.zero_phase(x, *sections), p["clip"])
    return signal.to_dtype(x, p["dtype"]), signal.label_mask(seizures, x.shape[-1], p["sample_rate"]), zero_filled


@pytest.mark.parametrize("montage", ["ref19", "tcp22"])
@pytest.mark.parametrize(
    ("rate", "dtype"), [(256.0, "float16"), (250.0, "float32"), (512.0, "float16"), (200.0, "float32")]
)
@pytest.mark.parametrize("block", [1, 5, None], ids=["one channel a block", "5 channels a block", "all at once"])
def test_block_pipeline_equals_the_whole_array_pipeline_bit_for_bit(montage, rate, dtype, block, monkeypatch):
    """Channel blocks (the memory bound) give the very bytes the whole-array pipeline gave, zero-filled rows (no A2
    here) included."""
    n = int(rate * 25)
    rng = np.random.default_rng(int(rate))
    names = [e for e in TEN_TWENTY + ("A1", "A2") if e != "A2"]
    e = {
        name: np.cumsum(rng.standard_normal(n)) + 30 * np.sin(np.arange(n) * (i + 1) / 40)
        for i, name in enumerate(names)
    }
    if block is not None:
        monkeypatch.setattr(signal, "BLOCK_SAMPLES", block * n)
    params = {**PREPROCESS, "montage": montage, "dtype": dtype}
    eeg, labels, zero_filled = whole_array(e, rate, n, [(3.0, 7.5)], **params)
    out = signal.preprocess(e, rate, n, [(3.0, 7.5)], **params)
    assert out.eeg.dtype == eeg.dtype and out.eeg.shape == eeg.shape == (len(signal.montage_channels(montage)), 5000)
    assert out.eeg.tobytes() == eeg.tobytes()
    assert out.labels.tobytes() == labels.tobytes() and out.zero_filled == zero_filled
    assert zero_filled == (("T4-A2",) if montage == "tcp22" else ())


def test_missing_channels_error_says_why_an_electrode_is_unusable():
    e = electrodes(names=tuple(n for n in TEN_TWENTY if n not in ("FZ", "PZ")))
    with pytest.raises(RecordingError) as err:
        signal.preprocess(
            e,
            200.0,
            1000,
            [],
            **{**PREPROCESS, "missing_channels": "error"},
            unusable={"FZ": "physical minimum equals maximum (0): no calibration"},
        )
    assert err.value.reason == (
        "required channels missing: FZ (physical minimum equals maximum (0): no calibration), "
        "PZ (preprocess.missing_channels=error)"
    )
