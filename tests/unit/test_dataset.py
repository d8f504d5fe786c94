import logging
import pickle
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_array_equal

from eegcache.core import store
from eegcache.errors import CacheError, ConfigError
from eegcache.train import dataset
from eegcache.train.dataset import WindowDataset

RATE = 50.0  # Hz; windows of 4 s = 200 samples, stride 1 s = 50 samples
CHANNELS = ("FP1", "FP2", "C3", "C4")


def runs(labels: np.ndarray) -> list[list[int]]:
    """[start, stop) intervals where labels == 1, computed here independently of the package."""
    out, start = [], None
    for t, v in enumerate(labels.tolist() + [0]):
        if v and start is None:
            start = t
        elif not v and start is not None:
            out.append([start, t])
            start = None
    return out


def entry(split: str, patient: str, labels: np.ndarray, size: int = 0, md5: str = "") -> dict:
    seizures = runs(labels)
    return {
        "split": split,
        "patient": patient,
        "size": size,
        "md5": md5,
        "samples": len(labels),
        "seconds": len(labels) / RATE,
        "seizure_seconds": sum(b - a for a, b in seizures) / RATE,
        "seizures": seizures,
    }


def write_cache(root: Path, recordings: dict[str, tuple[np.ndarray, np.ndarray]], write_files: bool = True) -> Path:
    """A cache at ``root``: ``recordings`` maps 'split/bname' to (eeg [channels, samples], labels [samples])."""
    files = {}
    for key, (eeg, labels) in recordings.items():
        split, bname = key.split("/")
        size, md5 = 0, ""
        if write_files:
            facts = store.RecordingFacts(RATE, CHANNELS, (), eeg.shape[1] / RATE)
            size, md5 = store.write_recording(store.recording_path(root, split, bname), eeg, labels, facts)
        files[f"{key}{store.SUFFIX}"] = entry(split, bname.split("_")[0], labels, size, md5)
    metadata = {
        "schema_version": store.SCHEMA_VERSION,
        "split_policy": "official_tusz",
        "sample_rate": RATE,
        "channels": list(CHANNELS),
        "dtype": next((str(eeg.dtype) for eeg, _ in recordings.values() if eeg is not None), "float16"),
        "files": files,
    }
    store.write_metadata(root, metadata)
    return root


def recording(n: int, seed: int, seizures=(), dtype=np.float16) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    eeg = rng.normal(size=(len(CHANNELS), n)).astype(dtype)
    labels = np.zeros(n, dtype=np.uint8)
    for a, b in seizures:
        labels[a:b] = 1
    return eeg, labels


@pytest.fixture
def recs():
    return {
        "train/aaaaaaab_s001_t000": recording(1000, 1, [(120, 260), (500, 900)]),  # buckets of all kinds
        "train/aaaaaaab_s001_t001": recording(200, 2, [(0, 200)]),  # exactly one window, all seizure
        "train/aaaaaaac_s002_t000": recording(249, 3, [(248, 249)]),  # one window; the seizure lies past it
        "train/aaaaaaac_s002_t001": recording(150, 4),  # shorter than a window
        "dev/aaaaaaad_s001_t000": recording(600, 5, [(10, 30)]),
    }


@pytest.fixture
def cache(tmp_path, recs):
    return write_cache(tmp_path / "cache", recs)


def expected_count(n: int, w: int, s: int) -> int:
    return (n - w) // s + 1 if n >= w else 0


@pytest.mark.parametrize("window_s, stride_s", [(4.0, 1.0), (4.0, 4.0), (2.0, 0.5), (3.0, 7.0), (0.02, 0.02)])
def test_window_count_and_starts_follow_the_formula(cache, recs, window_s, stride_s):
    ds = WindowDataset(cache, "train", window_s=window_s, stride_s=stride_s)
    w, s = round(window_s * RATE), round(stride_s * RATE)
    assert (ds.window_samples, ds.stride_samples) == (w, s)
    expected = [
        (f"{key}.npz", start)
        for key, (_, labels) in sorted(recs.items())
        if key.startswith("train/")
        for start in range(0, len(labels) - w + 1, s)
    ]
    assert len(ds) == sum(expected_count(len(lab), w, s) for k, (_, lab) in recs.items() if k.startswith("train/"))
    assert [ds.window_location(i) for i in range(len(ds))] == expected


def test_windows_equal_source_slices_as_float32(cache, recs):
    ds = WindowDataset(cache, "train", window_s=4.0, stride_s=1.0)
    assert len(ds) == 17 + 1 + 1
    for i in range(len(ds)):
        key, start = ds.window_location(i)
        eeg, labels = recs[key.removesuffix(".npz")]
        x, y = ds[i]
        assert x.dtype == np.float32 and x.shape == (4, 200) and type(x) is np.ndarray
        assert y.dtype == np.uint8 and y.shape == (200,)
        assert_array_equal(x, eeg[:, start : start + 200].astype(np.float32))
        assert_array_equal(y, labels[start : start + 200])
    assert_array_equal(ds[-1][0], ds[len(ds) - 1][0])
    assert_array_equal(ds[np.int64(3)][1], ds[3][1])


def test_float32_cache_is_returned_unchanged(tmp_path):
    eeg, labels = recording(400, 9, [(50, 60)], dtype=np.float32)
    ds = WindowDataset(write_cache(tmp_path, {"eval/aaaaaaae_s001_t000": (eeg, labels)}), "eval", 4.0, 2.0)
    assert len(ds) == 3
    assert_array_equal(ds[2][0], eeg[:, 200:400])
    assert ds[0][1].sum() == 10 and ds[1][1].sum() == 0


def overlaps(ds: WindowDataset, recs) -> np.ndarray:
    """Seizure samples per window, counted from the recordings' labels (not from the metadata the dataset reads)."""
    counted = []
    for i in range(len(ds)):
        key, start = ds.window_location(i)
        counted.append(int(recs[key.removesuffix(".npz")][1][start : start + ds.window_samples].sum()))
    return np.array(counted)


def test_buckets_and_window_labels_follow_the_one_rule_counted_window_by_window(cache, recs):
    ds = WindowDataset(cache, "train", window_s=4.0, stride_s=1.0)  # the default rule: min_seizure_fraction 0.5
    overlap = overlaps(ds, recs)
    seizure = overlap >= 100
    assert_array_equal(ds.seizure_fraction, overlap / 200)
    assert_array_equal(ds.window_labels, seizure.astype(np.uint8))
    assert [ds.window_label(i) for i in range(len(ds))] == seizure.astype(int).tolist()
    assert_array_equal(ds.buckets["none"], np.flatnonzero(overlap == 0))
    assert_array_equal(ds.buckets["partial"], np.flatnonzero((overlap > 0) & ~seizure))
    assert_array_equal(ds.buckets["seizure"], np.flatnonzero(seizure))
    # all three kinds occur in this cache, so the comparison above is not vacuous
    assert {k: len(v) for k, v in ds.buckets.items()} == {"none": 2, "partial": 4, "seizure": 13}


@pytest.mark.parametrize("label", ["any", "fraction", "center"])
@pytest.mark.parametrize("fraction", [0.25, 0.5, 1.0])
def test_each_label_rule_agrees_with_the_samples_of_each_window(cache, recs, label, fraction):
    ds = WindowDataset(cache, "train", 4.0, 1.0, label=label, min_seizure_fraction=fraction)
    overlap, centres = overlaps(ds, recs), []
    for i in range(len(ds)):
        key, start = ds.window_location(i)
        centres.append(int(recs[key.removesuffix(".npz")][1][start + 100]))
    expected = {"any": overlap > 0, "fraction": overlap >= fraction * 200, "center": np.array(centres) == 1}[label]
    assert_array_equal(ds.window_labels, expected.astype(np.uint8))
    ys = [ds[i][1] for i in range(len(ds))]
    assert all(y.shape == () and y.dtype == np.uint8 for y in ys)
    assert [int(y) for y in ys] == expected.astype(int).tolist()
    assert expected.any() and not expected.all()  # both labels occur: not vacuous
    assert_array_equal(ds.buckets["seizure"], np.flatnonzero(expected))


@pytest.mark.parametrize("dtype, kind", [("float32", np.float32), ("float16", np.float16), (None, np.float16)])
def test_dtype_is_what_x_is_returned_as(cache, recs, dtype, kind):
    ds = WindowDataset(cache, "train", 4.0, 1.0, dtype=dtype)
    key, start = ds.window_location(5)
    x, _ = ds[5]
    assert x.dtype == kind
    assert_array_equal(x, recs[key.removesuffix(".npz")][0][:, start : start + 200].astype(kind))


def test_a_batch_read_at_once_equals_the_windows_read_one_by_one(cache):
    ds = WindowDataset(cache, "train", 4.0, 1.0, dtype="float16", max_open=1)
    order = [7, 0, 18, 7, -1, 3]
    items = ds.__getitems__(order)
    x, y = ds[order]
    assert x.shape == (6, 4, 200) and y.shape == (6, 200) and x.dtype == np.float16
    for n, i in enumerate(order):
        one_x, one_y = ds[i]
        assert_array_equal(items[n][0], one_x)
        assert_array_equal(items[n][1], one_y)
        assert_array_equal(x[n], one_x)
        assert_array_equal(y[n], one_y)
    with pytest.raises(IndexError):
        ds[[0, 19]]
    advised = WindowDataset(cache, "train", 4.0, 1.0, dtype="float16", max_open=1, prefetch=True)
    assert not ds.prefetch  # off by default: it costs on a warm page cache (bench/bench_loader.py)
    assert_array_equal(advised[order][0], x)
    assert_array_equal(advised[order][1], y)


def test_max_open_defaults_to_the_split_within_the_descriptor_limit(cache):
    import resource

    ds = WindowDataset(cache, "train", 4.0, 1.0)
    assert ds.max_open == 4  # every file of the split
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (8, hard))
        assert dataset.default_max_open(4664) == 2 and dataset.default_max_open(1) == 1
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert dataset.default_max_open(4664) == min(4664, soft // 4, dataset.MAX_OPEN_CAP)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 300),
    window=st.integers(1, 80),
    stride=st.integers(1, 40),
    flags=st.lists(st.booleans(), min_size=300, max_size=300),
)
def test_bucket_overlap_from_intervals_equals_label_sums(n, window, stride, flags):
    labels = np.array(flags[:n], dtype=np.uint8)
    with tempfile.TemporaryDirectory() as root:  # metadata only: building the index opens no recording
        write_cache(Path(root), {"train/aaaaaaaa_s001_t000": (None, labels)}, write_files=False)
        ds = WindowDataset(root, "train", window_s=window / RATE, stride_s=stride / RATE)
    starts = range(0, n - window + 1, stride)
    assert_array_equal(ds.seizure_samples, [int(labels[s : s + window].sum()) for s in starts])


def test_short_recording_gives_no_windows_and_is_counted(cache, caplog):
    with caplog.at_level(logging.INFO, logger="eegcache.train.dataset"):
        ds = WindowDataset(cache, "train", window_s=4.0, stride_s=1.0)
    assert ds.short_recordings == 1
    assert "train/aaaaaaac_s002_t001.npz" in ds.files
    assert all(ds.window_location(i)[0] != "train/aaaaaaac_s002_t001.npz" for i in range(len(ds)))
    assert "1 of 4 recordings are shorter" in caplog.text
    long_windows = WindowDataset(cache, "train", window_s=30.0, stride_s=1.0)
    assert (len(long_windows), long_windows.short_recordings) == (0, 4)
    assert {k: v.tolist() for k, v in long_windows.buckets.items()} == {"none": [], "partial": [], "seizure": []}


def test_reads_are_memory_mapped_and_the_lru_stays_bounded(tmp_path, monkeypatch):
    big = recording(400_000, 11, [(399_900, 400_000)])
    recs = {f"train/aaaaaaa{c}_s001_t000": recording(600, i) for i, c in enumerate("bcdef")}
    recs["train/aaaaaaaz_s001_t000"] = big
    cache = write_cache(tmp_path, recs)
    opened, real_open = [], store.open_recording

    def spy(path, mmap=True):
        rec = real_open(path, mmap=mmap)
        opened.append((Path(path).name, mmap, type(rec.eeg), type(rec.labels)))
        return rec

    monkeypatch.setattr(dataset.store, "open_recording", spy)
    ds = WindowDataset(cache, "train", window_s=4.0, stride_s=2.0, max_open=2)
    assert opened == []  # construction reads metadata only
    x, y = ds[-1]
    assert ds.window_location(-1) == ("train/aaaaaaaz_s001_t000.npz", 399_800)
    assert_array_equal(x, big[0][:, 399_800:].astype(np.float32))
    assert y[:100].sum() == 0 and y[100:].sum() == 100
    assert opened == [("aaaaaaaz_s001_t000.npz", True, np.memmap, np.memmap)]

    small = [i for i in range(len(ds)) if "aaaaaaaz" not in ds.window_location(i)[0]]
    assert len(small) == 5 * 5  # (600 - 200) // 100 + 1 windows per small file
    order = np.random.default_rng(0).permutation(small + [len(small), len(ds) - 2])
    for i in order:
        key, start = ds.window_location(i)
        x, _ = ds[i]
        assert_array_equal(x, recs[key.removesuffix(".npz")][0][:, start : start + 200].astype(np.float32))
        assert ds.open_count <= 2
    assert all(mmap and eeg is np.memmap for _, mmap, eeg, _ in opened)
    assert len(opened) > 6  # files were evicted and reopened

    before = len(opened)
    for i in range(10):  # consecutive windows of one file reuse its open map
        ds[i]
    assert len(opened) - before <= 1


def test_pickle_round_trip_drops_open_maps_and_gives_equal_windows(cache):
    ds = WindowDataset(cache, "train", window_s=4.0, stride_s=1.0, max_open=3)
    first = [ds[i] for i in range(len(ds))]
    assert ds.open_count == 3
    clone = pickle.loads(pickle.dumps(ds))
    assert clone.open_count == 0 and ds.open_count == 3
    assert len(clone) == len(ds) and clone.files == ds.files
    for name in ("none", "partial", "seizure"):
        assert_array_equal(clone.buckets[name], ds.buckets[name])
    for i, (x, y) in enumerate(first):
        cx, cy = clone[i]
        assert_array_equal(cx, x)
        assert_array_equal(cy, y)
    assert clone.open_count == 3


def test_balanced_indices_follow_the_weights(cache):
    ds = WindowDataset(cache, "train", window_s=4.0, stride_s=1.0)
    weights = {"none": 0.5, "partial": 0.3, "seizure": 0.2}
    drawn = ds.balanced_indices(20_000, np.random.default_rng(42), weights)
    assert drawn.shape == (20_000,) and drawn.dtype == np.int64
    for name, w in weights.items():
        share = np.isin(drawn, ds.buckets[name]).mean()
        assert share == pytest.approx(w, abs=0.015)
    assert set(drawn.tolist()) == set(range(len(ds)))  # every window of the small buckets gets drawn
    assert_array_equal(drawn, ds.balanced_indices(20_000, 42, weights))  # a seed gives the same draw

    only_seizure = ds.balanced_indices(1000, 1, {"seizure": 2.0, "partial": 2.0})  # unnormalised; `none` weighs 0
    assert not np.isin(only_seizure, ds.buckets["none"]).any()
    assert np.isin(only_seizure, ds.buckets["seizure"]).mean() == pytest.approx(0.5, abs=0.05)
    assert ds.balanced_indices(0, 1, weights).tolist() == []
    assert_array_equal(ds.balanced_indices(50, 3, {"full": 1.0}), ds.balanced_indices(50, 3, {"seizure": 1.0}))


def test_an_empty_bucket_gives_its_weight_to_the_others_with_one_warning(cache, caplog):
    dev = WindowDataset(cache, "dev", window_s=4.0, stride_s=1.0)
    assert len(dev.buckets["seizure"]) == 0 and len(dev.buckets["partial"]) > 0  # 20 seizure samples of 200
    with caplog.at_level(logging.WARNING, logger="eegcache.train.dataset"):
        drawn = [dev.balanced_indices(4000, seed, {"none": 0.5, "partial": 0.25, "seizure": 0.25}) for seed in (0, 1)]
    assert caplog.text.count("split 'dev' has no seizure windows: balancing over the other buckets") == 1
    assert "none 0.67, partial 0.33" in caplog.text
    assert np.isin(drawn[0], dev.buckets["partial"]).mean() == pytest.approx(1 / 3, abs=0.03)
    with pytest.raises(ConfigError, match=r"split 'dev' has no window in any weighted bucket \(seizure\)"):
        dev.balanced_indices(10, 0, {"seizure": 1.0})


def test_balanced_indices_reject_bad_weights(cache):
    dev = WindowDataset(cache, "dev", window_s=4.0, stride_s=1.0)
    assert len(dev.balanced_indices(10, 0, {"none": 1.0, "seizure": 0.0})) == 10
    with pytest.raises(ConfigError, match="unknown buckets"):
        dev.balanced_indices(10, 0, {"ictal": 1.0})
    with pytest.raises(ConfigError, match="non-negative"):
        dev.balanced_indices(10, 0, {"none": 1.0, "partial": -0.5})
    with pytest.raises(ConfigError, match="positive sum"):
        dev.balanced_indices(10, 0, {"none": 0.0})


def test_unknown_split_lists_the_present_ones(cache):
    with pytest.raises(CacheError, match=r"no split 'eval' in the cache \(present: dev, train\)") as err:
        WindowDataset(cache, "eval")
    assert err.value.path == str(cache / store.METADATA_NAME)


@pytest.mark.parametrize(
    "window_s, stride_s, bad",
    [(0.0, 1.0, "window_s"), (4.0, -1.0, "stride_s"), (4.01, 1.0, "window_s"), (4.0, 0.005, "stride_s")],
)
def test_window_and_stride_must_be_positive_whole_samples(cache, window_s, stride_s, bad):
    with pytest.raises(ConfigError, match=rf"{bad}=.* not a positive whole number of samples at 50 Hz"):
        WindowDataset(cache, "train", window_s=window_s, stride_s=stride_s)


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_max_open_must_be_a_positive_whole_number(cache, bad):
    with pytest.raises(ConfigError, match="max_open"):
        WindowDataset(cache, "train", max_open=bad)


def test_numpy_scalars_index_and_booleans_do_not(cache):
    ds = WindowDataset(cache, "train", 4.0, 1.0)
    assert_array_equal(ds[np.array(3)][0], ds[3][0])
    assert_array_equal(ds[np.int64(3)][0], ds[3][0])
    for bad in (True, np.bool_(False)):
        with pytest.raises(TypeError, match="boolean"):
            ds[bad]


def test_index_out_of_range(cache):
    ds = WindowDataset(cache, "dev", window_s=4.0, stride_s=1.0)
    assert len(ds) == 9
    for i in (9, -10, 100):
        with pytest.raises(IndexError, match=f"window {i} out of range for 9 windows"):
            ds[i]
    with pytest.raises(IndexError):
        ds.window_location(9)
    with pytest.raises(TypeError):
        ds[1.5]


def test_missing_file_is_named_on_access(cache):
    ds = WindowDataset(cache, "train", window_s=4.0, stride_s=1.0)
    (cache / "train" / "aaaaaaab_s001_t001.npz").unlink()
    assert ds[0][0].shape == (4, 200)  # other files still read
    i = ds.files.index("train/aaaaaaab_s001_t001.npz")
    j = next(k for k in range(len(ds)) if ds.window_location(k)[0] == ds.files[i])
    with pytest.raises(CacheError, match="aaaaaaab_s001_t001.npz: listed in the cache metadata but missing"):
        ds[j]


def test_file_disagreeing_with_metadata_is_an_error(tmp_path):
    eeg, labels = recording(400, 1)
    cache = write_cache(tmp_path, {"train/aaaaaaab_s001_t000": (eeg, labels)})
    store.write_recording(
        cache / "train" / "aaaaaaab_s001_t000.npz",
        eeg[:, :300],
        labels[:300],
        store.RecordingFacts(RATE, CHANNELS, (), 6.0),
    )
    ds = WindowDataset(cache, "train", window_s=4.0, stride_s=4.0)
    with pytest.raises(CacheError, match=r"eeg shape \(4, 300\) but the metadata says 4 channels × 400 samples"):
        ds[1]


def test_malformed_seizure_intervals_are_an_error(tmp_path):
    cache = write_cache(tmp_path, {"train/aaaaaaab_s001_t000": (None, np.zeros(400, np.uint8))}, write_files=False)
    metadata = store.read_metadata(cache)
    metadata["files"]["train/aaaaaaab_s001_t000.npz"]["seizures"] = [[100, 200], [150, 250]]
    store.write_metadata(cache, metadata)
    with pytest.raises(CacheError, match="aaaaaaab_s001_t000.npz: seizure intervals are not sorted, disjoint"):
        WindowDataset(cache, "train", window_s=4.0, stride_s=1.0)
