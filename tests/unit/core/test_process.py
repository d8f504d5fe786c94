import dataclasses
import shutil

import numpy as np
import pytest

from eegcache.core import corpus, edfheader, process, store
from eegcache.core.identity import stable_hash
from eegcache.core.montage import electrode_of
from eegcache.errors import AnnotationError, RecordingError

PARAMS = {
    "data": {"split_policy": "official_tusz", "dev_ratio": 0.2, "split_seed": 0},
    "preprocess": {
        "montage": "ref19",
        "missing_channels": "zero",
        "sample_rate": 200,
        "bandpass_low": 0.5,
        "bandpass_high": 80.0,
        "bandpass_order": 4,
        "notch_freq": 60.0,
        "notch_q": 30.0,
        "clip": 10.0,
        "dtype": "float16",
    },
    "build": {"on_error": "fail"},
}


def entry(split: str, patient: str, seconds: float, seizure_seconds: float, size: int) -> dict:
    return {"split": split, "patient": patient, "seconds": seconds, "seizure_seconds": seizure_seconds, "size": size}


def test_runs_are_half_open_sample_intervals_of_ones():
    assert process._runs(np.array([0, 1, 1, 0, 0, 1], dtype=np.uint8)) == [[1, 3], [5, 6]]
    assert process._runs(np.ones(4, dtype=np.uint8)) == [[0, 4]]
    assert process._runs(np.zeros(4, dtype=np.uint8)) == []


def test_skipped_entry_names_the_file_and_line_but_not_the_machines_folders():
    exc = AnnotationError("bad row", "/mnt/raw/edf/train/x/aaaaaaab_s001_t000.csv_bi", 7)
    assert process.skipped_entry("edf/train/x/aaaaaaab_s001_t000.edf", exc) == {
        "file": "edf/train/x/aaaaaaab_s001_t000.edf",
        "reason": "aaaaaaab_s001_t000.csv_bi:7: bad row",
    }
    assert process.skipped_entry("a.edf", RecordingError("too short"))["reason"] == "too short"


def test_cache_metadata_records_params_code_inputs_and_per_split_totals():
    files = {
        "train/b.npz": entry("train", "bbbbbbbb", 60.0, 10.0, 1000),
        "train/a.npz": entry("train", "aaaaaaaa", 30.5, 0.0, 500),
        "dev/c.npz": entry("dev", "cccccccc", 20.0, 5.0, 300),
    }
    inputs = [("edf/a.edf", "1" * 32, "2" * 32), ("edf/d.edf", "3" * 32, None)]
    skipped = [{"file": "z.edf", "reason": "late"}, {"file": "b.edf", "reason": "early"}]
    meta = process.cache_metadata(
        params=PARAMS,
        code="c0de",
        package_version="9.9",
        inputs=inputs,
        files=files,
        skipped=skipped,
        excluded=[{"file": "x.edf", "reason": "why"}],
    )
    assert meta["params_hash"] == stable_hash(PARAMS) and meta["params"] == PARAMS
    assert meta["schema_version"] == store.SCHEMA_VERSION
    assert meta["package_version"] == "9.9" and meta["code_digest"] == "c0de"
    assert meta["split_policy"] == "official_tusz" and meta["dtype"] == "float16" and meta["sample_rate"] == 200.0
    assert len(meta["channels"]) == 19 and meta["raw_recordings"] == 2
    assert meta["raw_digest"] == stable_hash([list(i) for i in inputs])
    assert meta["splits"] == {
        "train": {"files": 2, "patients": 2, "seconds": 90.5, "seizure_seconds": 10.0, "bytes": 1500},
        "dev": {"files": 1, "patients": 1, "seconds": 20.0, "seizure_seconds": 5.0, "bytes": 300},
    }
    assert [s["file"] for s in meta["skipped"]] == ["b.edf", "z.edf"]
    assert list(meta["files"]) == ["dev/c.npz", "train/a.npz", "train/b.npz"]
    assert meta["excluded"] == [{"file": "x.edf", "reason": "why"}]


def test_code_digest_changes_with_any_source_file_of_core(tmp_path, monkeypatch):
    copy = tmp_path / "core"
    shutil.copytree(process.CORE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(process, "CORE_DIR", copy)
    before = process.code_digest()
    assert process.code_digest() == before
    (copy / "__init__.py").write_text((copy / "__init__.py").read_text() + "# a comment\n")
    changed = process.code_digest()
    assert changed != before
    (copy / "new.py").write_text("")
    assert process.code_digest() not in (before, changed)


def test_code_digest_changes_with_a_library_version(monkeypatch):
    before = process.code_digest()
    monkeypatch.setattr(process.importlib_metadata, "version", lambda lib: "0.0" if lib == "scipy" else "1.0")
    assert process.code_digest() != before


@pytest.fixture
def task(demo_corpus) -> process.Task:
    ref = corpus.discover(demo_corpus)[0]
    return process.make_task(ref, "train", corpus.parse_annotation(ref.annotation), "p" * 64, "c" * 64)


def test_make_task_puts_the_output_at_split_and_bname(task):
    assert task.rel == f"train/{task.edf.stem}.npz" and task.annotation.suffix == ".csv_bi"
    assert task.key_parts == ("p" * 64, "c" * 64, ".csv_bi") and task.annotation_duration_s > 0


def test_process_writes_the_file_its_entry_describes_and_stamps_its_inputs(task, tmp_path):
    output = process.process(task, PARAMS["preprocess"], tmp_path)
    path = tmp_path / task.rel
    assert output.entry["md5"] == store.md5_file(path) and output.entry["size"] == path.stat().st_size
    assert output.edf.md5 == store.md5_file(task.edf) and output.edf.size == task.edf.stat().st_size
    assert output.annotation.md5 == store.md5_file(task.annotation)
    key = process.recording_key(task.key_parts, "train", output.edf.md5, output.annotation.md5)
    assert output.entry["key"] == key
    cached = store.open_recording(path)
    assert output.entry["samples"] == cached.eeg.shape[1] and cached.facts.sample_rate == 200.0


def test_process_names_an_input_it_cannot_read(task, tmp_path):
    gone = dataclasses.replace(task, annotation=tmp_path / "gone.csv_bi")
    with pytest.raises(AnnotationError, match="cannot read annotation file") as err:
        process.process(gone, PARAMS["preprocess"], tmp_path)
    assert err.value.path == str(tmp_path / "gone.csv_bi")


def without_calibration(task: process.Task, folder, electrode: str) -> process.Task:
    """A copy of the task's recording whose ``electrode`` has physical maximum = physical minimum in the header."""
    edf_copy, annotation_copy = folder / task.edf.name, folder / task.annotation.name
    shutil.copy(task.edf, edf_copy)
    shutil.copy(task.annotation, annotation_copy)
    header = edfheader.check(edf_copy)
    index, count = [electrode_of(label) for label in header.labels].index(electrode), len(header.labels)
    data = bytearray(edf_copy.read_bytes())
    minimum = 256 + 104 * count + 8 * index
    maximum = 256 + 112 * count + 8 * index
    data[maximum : maximum + 8] = data[minimum : minimum + 8]
    edf_copy.write_bytes(bytes(data))
    return dataclasses.replace(task, edf=edf_copy, annotation=annotation_copy)


@pytest.mark.filterwarnings("error")
def test_an_electrode_without_calibration_is_zero_filled_recorded_and_logged(task, tmp_path, caplog):
    damaged = without_calibration(task, tmp_path, "FZ")
    with caplog.at_level("WARNING", logger="eegcache.core.process"):
        output = process.process(damaged, PARAMS["preprocess"], tmp_path / "out")
    assert output.entry["zero_filled"] == ["FZ"]
    cached = store.open_recording(tmp_path / "out" / task.rel)
    assert cached.facts.zero_filled == ("FZ",)
    rows = list(cached.facts.channels)
    assert not cached.eeg[rows.index("FZ")].any() and cached.eeg[rows.index("CZ")].any()
    assert [r.getMessage() for r in caplog.records] == [
        f"{damaged.edf}: EEG channel FZ left out as missing: physical minimum equals maximum (-5000): no calibration"
    ]


def test_an_electrode_without_calibration_under_missing_channels_error(task, tmp_path):
    damaged = without_calibration(task, tmp_path, "FZ")
    with pytest.raises(RecordingError) as err:
        process.process(damaged, {**PARAMS["preprocess"], "missing_channels": "error"}, tmp_path / "out")
    assert str(err.value) == (
        f"{damaged.edf}: required channels missing: FZ (physical minimum equals maximum (-5000): "
        "no calibration) (preprocess.missing_channels=error)"
    )
