import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from eegcache.core import store
from eegcache.errors import CacheError

FACTS = store.RecordingFacts(200.0, ("FP1", "FP2", "C3"), ("C3",), 30.0)


@pytest.fixture
def arrays():
    rng = np.random.default_rng(1)
    eeg = rng.normal(size=(3, 6000)).astype(np.float16)
    eeg[2] = 0
    labels = np.zeros(6000, dtype=np.uint8)
    labels[1000:2500] = 1
    return eeg, labels


def test_round_trip_with_plain_numpy_load(tmp_path, arrays):
    eeg, labels = arrays
    path = tmp_path / "train" / "aaaaaaaa_s001_t000.npz"
    size, md5 = store.write_recording(path, eeg, labels, FACTS)
    assert size == path.stat().st_size and md5 == store.md5_file(path)
    with np.load(path) as npz:
        assert_array_equal(npz["eeg"], eeg)
        assert_array_equal(npz["labels"], labels)
        assert npz["sample_rate"] == 200.0 and npz["duration_s"] == 30.0
        assert npz["channels"].tolist() == ["FP1", "FP2", "C3"] and npz["zero_filled"].tolist() == ["C3"]


def test_members_are_stored_uncompressed_with_fixed_timestamps(tmp_path, arrays):
    path = tmp_path / "x.npz"
    store.write_recording(path, *arrays, FACTS)
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        assert archive.testzip() is None
    assert {i.compress_type for i in infos} == {zipfile.ZIP_STORED}
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}


def test_open_recording_memory_maps_aligned_arrays(tmp_path, arrays):
    eeg, labels = arrays
    path = tmp_path / "x.npz"
    store.write_recording(path, eeg, labels, FACTS)
    rec = store.open_recording(path)
    assert isinstance(rec.eeg, np.memmap) and isinstance(rec.labels, np.memmap)
    assert rec.eeg.ctypes.data % 64 == 0
    assert_array_equal(rec.eeg[:, 1234:2345], eeg[:, 1234:2345])
    assert_array_equal(rec.labels, labels)
    assert rec.facts == FACTS
    loaded = store.open_recording(path, mmap=False)
    assert not isinstance(loaded.eeg, np.memmap)
    assert_array_equal(loaded.eeg, eeg)


def test_same_input_same_bytes(tmp_path, arrays):
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    store.write_recording(a, *arrays, FACTS)
    store.write_recording(b, *arrays, FACTS)
    assert a.read_bytes() == b.read_bytes()


def test_encode_rejects_inconsistent_shapes(arrays):
    eeg, labels = arrays
    with pytest.raises(ValueError, match="same samples"):
        store.encode_recording(eeg, labels[:-1], FACTS)
    with pytest.raises(ValueError, match="channel names"):
        store.encode_recording(eeg[:2], labels, FACTS)


def test_truncated_file_is_a_cache_error_naming_it(tmp_path, arrays):
    path = tmp_path / "x.npz"
    store.write_recording(path, *arrays, FACTS)
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(CacheError, match="x.npz"):
        store.open_recording(path)


def test_atomic_write_leaves_no_temp_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")

    def boom(*_):
        raise OSError("disk full")

    monkeypatch.setattr(store.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        store.atomic_write(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_metadata_round_trip_and_errors(tmp_path):
    with pytest.raises(CacheError, match="metadata missing"):
        store.read_metadata(tmp_path)
    store.write_metadata(tmp_path, {"schema_version": store.SCHEMA_VERSION, "b": 1, "a": [1, 2]})
    raw = (tmp_path / store.METADATA_NAME).read_text()
    assert raw.index('"a"') < raw.index('"b"')  # canonical key order: equal content, equal bytes
    assert store.read_metadata(tmp_path)["a"] == [1, 2]
    (tmp_path / store.METADATA_NAME).write_text(json.dumps({"schema_version": 999}))
    with pytest.raises(CacheError, match="schema version 999"):
        store.read_metadata(tmp_path)
    (tmp_path / store.METADATA_NAME).write_text("{not json")
    with pytest.raises(CacheError, match="unreadable"):
        store.read_metadata(tmp_path)


def test_prefetch_columns_leaves_values_and_accepts_any_array(tmp_path, arrays):
    eeg, labels = arrays
    path = tmp_path / "x.npz"
    store.write_recording(path, eeg, labels, FACTS)
    rec = store.open_recording(path)
    for start, stop in [(0, 10), (5990, 6000), (1234, 4321)]:
        store.prefetch_columns(rec.eeg, start, stop)
        assert_array_equal(rec.eeg[:, start:stop], eeg[:, start:stop])
    store.prefetch_columns(eeg, 0, 100)  # an in-memory array: nothing to advise, no error


@pytest.mark.parametrize("kind", ["fifo", "device", "link to a device", "folder"])
def test_only_regular_files_are_opened_and_hashed(tmp_path, kind):
    """A FIFO would block the open and /dev/zero never end: both are refused before any read (in a child process
    with a timeout, so a regression fails instead of hanging the tests); regular files and links to them hash."""
    path = tmp_path / "input.edf"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    else:
        path = Path("/dev/zero") if kind == "device" else path
        if kind == "link to a device":
            path.symlink_to("/dev/zero")
    code = "import sys; from eegcache.core import store; print(store.md5_file(sys.argv[1]))"
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "not a regular file" in proc.stderr, proc.stderr
    regular = tmp_path / "regular.edf"
    regular.write_bytes(b"EEG")
    (tmp_path / "link.edf").symlink_to(regular)
    assert store.md5_file(tmp_path / "link.edf") == store.md5_bytes(b"EEG")
    with store.open_regular(regular) as handle:
        assert handle.read() == b"EEG"
