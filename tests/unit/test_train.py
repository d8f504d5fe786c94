import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal
from scipy.stats import mannwhitneyu

from eegcache import config
from eegcache.core import store
from eegcache.errors import CacheError, ConfigError, TrainError
from eegcache.train import baseline, dataset
from eegcache.train.dataset import WindowDataset
from tests.unit.test_dataset import CHANNELS, RATE, recording, write_cache

BANDS = ((1.0, 4.0), (4.0, 8.0), (8.0, 13.0), (13.0, 20.0))


# --- ROC and AUROC -----------------------------------------------------------------------------------------------


def test_roc_and_auroc_of_a_hand_example():
    # positives score 0.9 and 0.7, negatives 0.8 and 0.1: 3 of the 4 (positive, negative) pairs are ordered right
    labels, scores = np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.7, 0.1])
    fpr, tpr, thresholds = baseline.roc_curve(labels, scores)
    assert_allclose(fpr, [0, 0, 0.5, 0.5, 1])
    assert_allclose(tpr, [0, 0.5, 0.5, 1, 1])
    assert_array_equal(thresholds, [np.inf, 0.9, 0.8, 0.7, 0.1])
    assert baseline.auroc(labels, scores) == pytest.approx(0.75)


def test_tied_scores_count_half():
    # pairs: (0.5, 0.5) tie = 1/2, (0.5, 0.1) = 1, (0.9, 0.5) = 1, (0.9, 0.1) = 1 -> 3.5 / 4
    labels, scores = np.array([1, 0, 1, 0]), np.array([0.5, 0.5, 0.9, 0.1])
    assert baseline.auroc(labels, scores) == pytest.approx(0.875)
    fpr, tpr, _ = baseline.roc_curve(labels, scores)
    assert_allclose(fpr, [0, 0, 0.5, 1])  # one point per distinct score: the tie moves both rates at once
    assert_allclose(tpr, [0, 0.5, 1, 1])
    assert baseline.auroc(labels, np.full(4, 0.3)) == pytest.approx(0.5)
    assert baseline.auroc(labels, -scores) == pytest.approx(1 - 0.875)


@settings(max_examples=80, deadline=None)
@given(pairs=st.lists(st.tuples(st.booleans(), st.integers(0, 6)), min_size=2, max_size=60))
def test_auroc_is_the_mann_whitney_u_over_the_pair_count(pairs):
    labels = np.array([p[0] for p in pairs], dtype=np.uint8)
    scores = np.array([p[1] for p in pairs], dtype=np.float64) / 6  # few distinct values: many ties
    positives, negatives = scores[labels == 1], scores[labels == 0]
    if len(positives) == 0 or len(negatives) == 0:
        with pytest.raises(TrainError, match="ROC undefined: no (seizure|background) windows"):
            baseline.auroc(labels, scores)
        return
    u = mannwhitneyu(positives, negatives, alternative="two-sided").statistic
    assert baseline.auroc(labels, scores) == pytest.approx(u / (len(positives) * len(negatives)), abs=1e-12)
    fpr, tpr, _ = baseline.roc_curve(labels, scores)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)


def test_thin_curve_keeps_both_ends_and_the_order():
    fpr = np.linspace(0, 1, 5001)
    tpr = np.sqrt(fpr)
    points = baseline.thin_curve(fpr, tpr, max_points=100)
    assert len(points) == 100
    assert points[0] == {"fpr": 0.0, "tpr": 0.0} and points[-1] == {"fpr": 1.0, "tpr": 1.0}
    assert all(a["fpr"] <= b["fpr"] and a["tpr"] <= b["tpr"] for a, b in zip(points, points[1:]))
    short = baseline.thin_curve(fpr[:3], tpr[:3], max_points=100)
    assert [p["fpr"] for p in short] == [0.0, 0.0002, 0.0004]


# --- detection metrics ---------------------------------------------------------------------------------------------


def test_false_alarms_per_24h_arithmetic():
    # 1440 windows every 5 s tile 7200 s = 2 h; 3 false alarms in 2 h = 36 per 24 h
    assert baseline.false_alarms_per_24h(3, 1440, 5.0) == pytest.approx(36.0)
    assert baseline.false_alarms_per_24h(0, 10, 1.0) == 0.0
    assert baseline.false_alarms_per_24h(1, 86400, 1.0) == pytest.approx(1.0)


def test_detection_metrics_at_the_threshold():
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0])
    scores = np.array([0.9, 0.8, 0.6, 0.2, 0.7, 0.5, 0.4, 0.3, 0.3, 0.1, 0.1, 0.0])
    m = baseline.detection_metrics(labels, scores, threshold=0.5, stride_s=600.0, split="dev")
    # alarms (>= 0.5): three of four seizure windows, two of eight background windows (0.7 and 0.5)
    assert m == {
        "dev_windows": 12,
        "dev_seizure_windows": 4,
        "dev_hours": 2.0,
        "dev_auroc": pytest.approx(baseline.auroc(labels, scores)),
        "dev_sensitivity": 0.75,
        "dev_specificity": 0.75,
        "dev_false_alarms": 2,
        "dev_false_alarms_per_24h": 24.0,
    }
    # the AUROC by counting pairs: 0.9 and 0.8 beat all 8 negatives, 0.6 beats 7, 0.2 beats 3
    assert m["dev_auroc"] == pytest.approx((8 + 8 + 7 + 3) / 32, abs=1e-6)
    assert json.dumps(m)  # plain numbers only


# --- logistic regression -------------------------------------------------------------------------------------------


def separable_set(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Standard-normal points in 5-D labelled by the side of a hyperplane, with a 0.5 margin cleared around it."""
    rng = np.random.default_rng(seed)
    normal = np.array([2.0, -1.0, 0.5, 0.0, 0.0])
    normal /= np.linalg.norm(normal)
    x = rng.normal(size=(n, 5))
    side = x @ normal
    x = x[np.abs(side) > 0.5]
    return x, (x @ normal > 0).astype(np.uint8), normal


def fit(x, y, seed=0, **kw):
    args = {"epochs": 50, "batch_size": 32, "learning_rate": 0.5, "l2": 0.0, **kw}
    return baseline.fit_logistic(x, y, rng=np.random.default_rng(seed), **args)


def test_logistic_regression_separates_a_linearly_separable_set():
    x, y, normal = separable_set()
    weights, bias = fit(x, y)
    predicted = (x @ weights + bias > 0).astype(np.uint8)
    assert_array_equal(predicted, y)
    assert weights @ normal / np.linalg.norm(weights) > 0.95  # it found the true direction
    x_new, y_new, _ = separable_set(seed=1)
    assert np.mean((x_new @ weights + bias > 0) == y_new) > 0.97


def test_logistic_regression_is_deterministic_for_a_seed_and_l2_shrinks():
    x, y, _ = separable_set()
    w1, b1 = fit(x, y, seed=3)
    w2, b2 = fit(x, y, seed=3)
    assert_array_equal(w1, w2) and b1 == b2
    w3, _ = fit(x, y, seed=4)
    assert not np.array_equal(w1, w3)
    shrunk, _ = fit(x, y, l2=1.0)
    assert np.linalg.norm(shrunk) < 0.5 * np.linalg.norm(w1)


def test_sample_weights_and_draw_shift_the_decision_towards_the_rare_class():
    rng = np.random.default_rng(5)
    x = np.r_[rng.normal(-1, 1, size=(950, 1)), rng.normal(1, 1, size=(50, 1))]
    y = np.r_[np.zeros(950), np.ones(50)].astype(np.uint8)
    plain_w, plain_b = fit(x, y, epochs=20)
    counts = np.bincount(y)
    weighted_w, weighted_b = fit(x, y, epochs=20, sample_weight=(len(y) / (2.0 * counts))[y])
    positives = np.flatnonzero(y)
    oversampled_w, oversampled_b = fit(
        x, y, epochs=20, draw=lambda r: r.permutation(np.r_[np.arange(1000), np.repeat(positives, 18)])
    )
    # the boundary -b/w sits near the midpoint 0 when the classes weigh equally, far right of it when not
    assert -plain_b / plain_w[0] > 1.0
    assert abs(-weighted_b / weighted_w[0]) < 0.3
    assert abs(-oversampled_b / oversampled_w[0]) < 0.3


# --- features -----------------------------------------------------------------------------------------------------


def test_band_power_and_line_length_of_known_sines():
    rate, n = 200.0, 2000
    t = np.arange(n) / rate
    x = np.stack([3.0 * np.sin(2 * np.pi * 10.0 * t), 2.0 * np.sin(2 * np.pi * 6.0 * t), np.zeros(n)])
    features = baseline.window_features(x[None].astype(np.float32), rate, BANDS).reshape(3, len(BANDS) + 1)
    power = 10**features
    # a sine of amplitude A carries A²/2 of power, all of it in the band holding its frequency
    assert_allclose(power[0, 2], 3.0**2 / 2, rtol=0.02)
    assert_allclose(power[1, 1], 2.0**2 / 2, rtol=0.02)
    assert power[0, [0, 1, 3]].max() < 1e-3 * power[0, 2]
    # line length of A·sin(2πft) sampled at `rate`: mean |Δx| ≈ 4·A·f / rate
    assert_allclose(power[0, 4], 4 * 3.0 * 10.0 / rate, rtol=0.01)
    assert_allclose(power[1, 4], 4 * 2.0 * 6.0 / rate, rtol=0.01)
    assert np.all(np.isfinite(features)) and features[2].max() < -11  # a zero-filled channel stays finite
    names = baseline.feature_names(("A", "B", "C"), BANDS)
    assert names[:5] == ["A 1-4 Hz", "A 4-8 Hz", "A 8-13 Hz", "A 13-20 Hz", "A line length"] and len(names) == 15


def test_bands_must_fit_the_cache_rate():
    baseline.check_bands(BANDS, RATE, window_samples=200)
    with pytest.raises(ConfigError, match=r"20-30 Hz has no frequency bin below Nyquist \(25 Hz\)"):
        baseline.check_bands(((20.0, 30.0),), RATE, window_samples=200)
    with pytest.raises(ConfigError, match="4.1-4.4 Hz has no frequency bin"):
        baseline.check_bands(((4.1, 4.4),), RATE, window_samples=200)  # 2 s Welch segments: bins every 0.5 Hz
    assert config.parse_bands(" 1-4, 4-8 ,30-70") == ((1.0, 4.0), (4.0, 8.0), (30.0, 70.0))


# --- the whole run on a small synthetic cache ----------------------------------------------------------------------


def bursty(n: int, seed: int, seizures) -> tuple[np.ndarray, np.ndarray]:
    """Noise with a large 5 Hz rhythm inside each seizure interval (samples at RATE)."""
    eeg, labels = recording(n, seed, seizures, dtype=np.float32)
    t = np.arange(n) / RATE
    eeg[:, labels == 1] += 4 * np.sin(2 * np.pi * 5.0 * t[labels == 1])
    return eeg, labels


@pytest.fixture
def small_cache(tmp_path):
    return write_cache(
        tmp_path / "cache",
        {
            "train/aaaaaaab_s001_t000": bursty(3000, 1, [(520, 1110), (2030, 2400)]),
            "train/aaaaaaac_s001_t000": bursty(3000, 2, [(1170, 1830)]),
            "dev/aaaaaaad_s001_t000": bursty(3000, 3, [(930, 1530)]),  # windows partly in it: 35, 85, 65, 15 %
            "eval/aaaaaaae_s001_t000": bursty(1000, 4, []),
        },
    )


def small_config(cache: Path, out: Path, **train_fields) -> config.Config:
    fields = {
        "window_s": 4.0,
        "stride_s": 2.0,
        "bands": "1-4,4-8,8-13,13-20",
        "epochs": 20,
        "metrics_file": str(out / "m.json"),
        "roc_file": str(out / "roc.json"),
        "model_file": str(out / "model.json"),
        **train_fields,
    }
    base = config.Config()
    return dataclasses.replace(
        base, build=dataclasses.replace(base.build, out_dir=str(cache)), train=dataclasses.replace(base.train, **fields)
    )


@pytest.mark.parametrize("balance", config.BALANCE_MODES)
def test_run_reads_memory_mapped_windows_and_learns(small_cache, tmp_path, monkeypatch, balance):
    opened, real_open = [], store.open_recording

    def spy(path, mmap=True):
        opened.append(mmap)
        return real_open(path, mmap=mmap)

    monkeypatch.setattr(dataset.store, "open_recording", spy)
    result = baseline.run_train(small_config(small_cache, tmp_path / "out", balance=balance))
    assert opened and all(opened)  # every recording memory-mapped, none loaded whole
    m = result.metrics
    dev = WindowDataset(small_cache, "dev", window_s=4.0, stride_s=2.0)
    assert m["dev_windows"] == len(dev) == 29
    assert m["dev_seizure_windows"] == int(np.count_nonzero(dev.seizure_fraction >= 0.5)) == 6
    assert np.count_nonzero(dev.seizure_fraction > 0) == 8  # two windows graze it (35 % and 15 %): background
    assert m["dev_auroc"] > 0.95 and m["dev_sensitivity"] > 0.8
    # the same alarms as events over dev's one 60 s recording and its one seizure, [18.6, 30.6) s
    assert (m["dev_events"], m["dev_event_hours"]) == (1, round(60 / 3600, 6))
    assert m["dev_event_true_positives"] == m["dev_event_sensitivity"] == 1  # found: its seizure windows alarm
    assert json.loads(result.metrics_file.read_text()) == m
    model = json.loads(result.model_file.read_text())
    assert len(model["weights"]) == len(model["features"]) == len(CHANNELS) * 5


def test_split_features_do_not_depend_on_the_chunk_size(small_cache, monkeypatch):
    ds = WindowDataset(small_cache, "train", window_s=4.0, stride_s=2.0)
    whole = baseline.split_features(ds, BANDS)
    monkeypatch.setattr(baseline, "_CHUNK_VALUES", 3 * len(CHANNELS) * ds.window_samples)  # 3 windows per chunk
    assert_allclose(baseline.split_features(ds, BANDS), whole)
    direct = baseline.window_features(np.stack([ds[i][0] for i in (0, 7)]), RATE, BANDS)
    assert_allclose(whole[[0, 7]], direct)


def test_eval_split_without_seizure_windows_is_a_clear_error(small_cache, tmp_path):
    with pytest.raises(
        TrainError,
        match=r"split 'eval' has no seizure windows among its 9 .*AUROC and sensitivity "
        "are undefined",
    ) as err:
        baseline.run_train(small_config(small_cache, tmp_path, eval_split="eval"))
    assert err.value.path == str(small_cache / store.METADATA_NAME)
    assert not (tmp_path / "m.json").exists()


def test_train_split_without_seizure_windows_and_missing_splits(small_cache, tmp_path):
    with pytest.raises(TrainError, match="split 'eval' has no seizure windows .*nothing to learn"):
        baseline.run_train(small_config(small_cache, tmp_path, train_split="eval"))
    with pytest.raises(TrainError, match=r"split 'train' has no 80 s windows: all 2 recordings are shorter"):
        baseline.run_train(small_config(small_cache, tmp_path, window_s=80.0))
    (small_cache / store.METADATA_NAME).write_text(
        (small_cache / store.METADATA_NAME).read_text().replace('"split": "dev"', '"split": "train"')
    )
    with pytest.raises(CacheError, match=r"no split 'dev' in the cache \(present: eval, train\)"):
        baseline.run_train(small_config(small_cache, tmp_path))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"balance": "oversample"}, "train.balance = 'oversample'; expected one of buckets, class_weights, none"),
        ({"bands": "1-4,8-4"}, "train.bands = '1-4,8-4': '8-4' is not a band"),
        ({"bands": "1-4,alpha"}, "'alpha' is not a band"),
        ({"eval_split": "train"}, "train.train_split and train.eval_split are both 'train'"),
        ({"threshold": 1.0}, "train.threshold = 1.0"),
        ({"min_seizure_fraction": 0.0}, "train.min_seizure_fraction = 0.0"),
        ({"stride_s": 0.0}, "stride_s = 0.0; expected seconds > 0"),
        ({"learning_rate": 0.0}, "train.learning_rate = 0.0"),
        ({"epochs": 0}, "train.epochs and train.batch_size must be at least 1"),
    ],
)
def test_train_config_rejects_bad_values(override, message):
    with pytest.raises(ConfigError) as err:
        dataclasses.replace(config.TrainConfig(), **override)
    assert message in str(err.value)
