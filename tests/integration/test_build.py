"""The build stage end to end on real EDF files: contents, determinism, incremental rebuilds, bad input, leaks."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from eegcache.builder.run import run_build
from eegcache.core import corpus, store
from eegcache.errors import CorpusError, RecordingError
from eegcache.versions.verify import verify
from tests.conftest import make_config

pytestmark = pytest.mark.integration


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def built(base_config, demo_corpus, tmp_path_factory):
    work = tmp_path_factory.mktemp("built")
    cfg = make_config(base_config, demo_corpus, work)
    return cfg, run_build(cfg)


def test_build_writes_one_file_per_recording_with_metadata(built, demo_corpus):
    cfg, summary = built
    refs = corpus.discover(demo_corpus)
    meta = summary.metadata
    assert summary.processed == len(refs) and summary.reused == 0
    assert sorted(meta["files"]) == sorted(f"{r.official_split}/{r.bname}.npz" for r in refs)
    assert meta["split_policy"] == "official_tusz" and meta["schema_version"] == store.SCHEMA_VERSION
    assert meta["params"]["preprocess"]["dtype"] == "float16" and len(meta["params_hash"]) == 64
    for split in corpus.SPLITS:
        in_split = [r for r in refs if r.official_split == split]
        assert meta["splits"][split]["files"] == len(in_split)
        assert meta["splits"][split]["patients"] == len({r.patient for r in in_split})
    assert verify(summary.cache_dir).ok and verify(summary.cache_dir, deep=True).ok


def test_labels_follow_the_annotations(built, demo_corpus):
    _, summary = built
    checked = 0
    for ref in corpus.discover(demo_corpus):
        ann = corpus.parse_annotation(ref.annotation)
        rec = store.open_recording(summary.cache_dir / ref.official_split / f"{ref.bname}.npz")
        rate = rec.facts.sample_rate
        expected = sum(int(np.ceil(b * rate - 1e-9)) - int(np.ceil(a * rate - 1e-9)) for a, b in ann.seizures)
        assert int(rec.labels.sum()) == expected
        assert rec.eeg.shape == (19, len(rec.labels)) and rec.eeg.dtype == np.float16
        assert abs(rec.facts.duration_s - ann.duration_s) < 0.01
        checked += bool(ann.seizures)
    assert checked > 0, "the demo corpus should contain seizures"


def test_seizure_windows_carry_more_power(built):
    """The signal survives preprocessing: on the most involved channel (seizures may be focal), z-scored
    seizure samples are larger than background ones."""
    _, summary = built
    ratios = []
    for rel, entry in summary.metadata["files"].items():
        if entry["seizure_seconds"] > 5:
            rec = store.open_recording(summary.cache_dir / rel, mmap=False)
            x = rec.eeg.astype(np.float32)
            x = x[np.abs(x).max(axis=1) > 0]  # leave out zero-filled channels
            seiz, bckg = x[:, rec.labels == 1], x[:, rec.labels == 0]
            ratios.append(np.max(np.sqrt((seiz**2).mean(axis=1)) / np.sqrt((bckg**2).mean(axis=1))))
    assert ratios and min(ratios) > 2.0, ratios


def test_no_edf_header_text_in_the_cache(built, demo_corpus):
    _, summary = built
    needles = set()
    for edf_path in demo_corpus.rglob("*.edf"):
        header = edf_path.read_bytes()[:256]
        for field in (header[8:88], header[88:168]):  # local patient / recording identification
            needles |= {token for token in field.split() if len(token) >= 6 and token not in (b"Startdate",)}
    assert any(b"LEAKCHECK" in n for n in needles), "demo headers should carry recognisable text"
    blob = b"".join(tree_bytes(summary.cache_dir).values())
    leaks = sorted(n for n in needles if n in blob)
    assert not leaks, f"EDF header text found in the cache: {leaks[:5]}"


def test_same_inputs_give_byte_identical_caches(built, base_config, demo_corpus, tmp_path):
    _, summary = built
    other = run_build(make_config(base_config, demo_corpus, tmp_path, build={"workers": 1}))
    assert tree_bytes(other.cache_dir) == tree_bytes(summary.cache_dir)


def test_rerun_reuses_everything(built):
    cfg, summary = built
    again = run_build(cfg)
    assert again.processed == 0 and again.reused == summary.processed
    assert again.metadata == summary.metadata


def test_incremental_rebuild_processes_only_new_recordings(base_config, corpus_copy, tmp_path):
    patient_dir = next((corpus_copy / "edf" / "train").iterdir())
    parked = Path(shutil.move(patient_dir, tmp_path / "parked"))
    cfg = make_config(base_config, corpus_copy, tmp_path / "work")
    first = run_build(cfg)
    shutil.move(parked, patient_dir)
    added = len(list(patient_dir.rglob("*.edf")))
    second = run_build(cfg)
    assert (second.processed, second.reused) == (added, first.processed)
    clean = run_build(make_config(base_config, corpus_copy, tmp_path / "clean"))
    assert tree_bytes(second.cache_dir) == tree_bytes(clean.cache_dir)
    # removing the patient again removes exactly its outputs
    shutil.rmtree(patient_dir)
    third = run_build(cfg)
    assert third.removed == added and third.processed == 0 and verify(third.cache_dir, deep=True).ok


def test_changed_recording_and_changed_params(base_config, corpus_copy, tmp_path):
    cfg = make_config(base_config, corpus_copy, tmp_path / "work")
    first = run_build(cfg)
    csv_bi = sorted(corpus_copy.rglob("*.csv_bi"))[0]
    csv_bi.write_text(csv_bi.read_text() + "\n")  # same labels, new bytes: that recording is redone
    assert run_build(cfg).processed == 1
    float32 = make_config(base_config, corpus_copy, tmp_path / "work", preprocess={"dtype": "float32"})
    rebuilt = run_build(float32)
    assert rebuilt.processed == first.processed and rebuilt.reused == 0
    assert rebuilt.metadata["dtype"] == "float32" and verify(rebuilt.cache_dir, deep=True).ok


def _plant_junk(corpus_root: Path) -> Path:
    """A random-bytes '.edf' with a valid name and annotation, in a new patient of the train split."""
    folder = corpus_root / "edf" / "train" / "zzzzzzzz" / "s001_2010" / "01_tcp_ar"
    folder.mkdir(parents=True)
    (folder / "zzzzzzzz_s001_t000.edf").write_bytes(np.random.default_rng(3).bytes(5000))
    (folder / "zzzzzzzz_s001_t000.csv_bi").write_text(
        "# version = csv_v1.0.0\n# bname = zzzzzzzz_s001_t000\n# duration = 60.0000 secs\n#\n"
        "channel,start_time,stop_time,label,confidence\nTERM,0.0000,60.0000,bckg,1.0000\n"
    )
    return folder / "zzzzzzzz_s001_t000.edf"


def test_bad_recording_fails_the_build_naming_it(base_config, corpus_copy, tmp_path):
    junk = _plant_junk(corpus_copy)
    with pytest.raises(RecordingError) as err:
        run_build(make_config(base_config, corpus_copy, tmp_path, build={"workers": 1}))
    assert str(junk) in str(err.value) and "not a readable EDF file" in str(err.value)
    assert not (tmp_path / "cache" / "tusz" / store.METADATA_NAME).exists()


def test_a_recording_that_turns_bad_leaves_no_stale_output(base_config, corpus_copy, tmp_path):
    """Built once, then its EDF is damaged: with on_error=skip the rebuild lists it as skipped and removes its old
    output, so the cache still verifies (it must not keep a file its metadata no longer lists)."""
    cfg = make_config(base_config, corpus_copy, tmp_path, build={"on_error": "skip"})
    first = run_build(cfg)
    edf_path = sorted(corpus_copy.rglob("*.edf"))[0]
    rel = next(r for r in first.metadata["files"] if r.endswith(f"/{edf_path.stem}.npz"))
    edf_path.write_bytes(b"no longer an EDF file")
    second = run_build(cfg)
    assert [s["file"] for s in second.metadata["skipped"]] == [edf_path.relative_to(corpus_copy).as_posix()]
    assert rel not in second.metadata["files"] and not (second.cache_dir / rel).exists()
    assert len(second.metadata["files"]) == len(first.metadata["files"]) - 1
    assert verify(second.cache_dir, deep=True).ok


def test_rerun_with_skip_after_a_failed_build_reuses_what_it_built(base_config, corpus_copy, tmp_path):
    """The usual way through a bad file on a long build: on_error=fail stops at it, the rerun with skip builds only
    what was not done. on_error and prefer_montage_folders decide which recordings a cache holds, not the bytes of
    one, so they are no part of a recording's key (switching rebuilt every recording before)."""
    _plant_junk(corpus_copy)
    work = tmp_path / "work"
    with pytest.raises(RecordingError, match="zzzzzzzz_s001_t000.edf"):
        run_build(make_config(base_config, corpus_copy, work, build={"workers": 1}))
    built = len(list((work / "cache" / "tusz").rglob(f"*{store.SUFFIX}")))
    recordings = len(list(corpus_copy.rglob("*.edf")))
    assert built > 0
    skip = make_config(base_config, corpus_copy, work, build={"workers": 1, "on_error": "skip"})
    second = run_build(skip)
    assert (second.reused, second.processed) == (built, recordings - built)
    assert len(second.metadata["files"]) == recordings - 1 and len(second.metadata["skipped"]) == 1
    preferred = make_config(
        base_config,
        corpus_copy,
        work,
        build={"workers": 1, "on_error": "skip"},
        data={"prefer_montage_folders": ("03_tcp_ar_a",)},
    )
    third = run_build(preferred)
    assert (third.reused, third.processed) == (recordings - 1, 1)  # the junk is tried again, nothing else
    assert third.metadata["params"]["data"]["prefer_montage_folders"] == ["03_tcp_ar_a"]
    clean = run_build(
        make_config(
            base_config,
            corpus_copy,
            tmp_path / "clean",
            data={"prefer_montage_folders": ("03_tcp_ar_a",)},
            build={"workers": 1, "on_error": "skip"},
        )
    )
    assert tree_bytes(third.cache_dir) == tree_bytes(clean.cache_dir)


def test_bad_recording_is_skipped_and_recorded(base_config, corpus_copy, tmp_path):
    missing = sorted(corpus_copy.rglob("*.csv_bi"))[-1]
    missing.unlink()
    _plant_junk(corpus_copy)
    missing.with_suffix(".csv").unlink()
    summary = run_build(make_config(base_config, corpus_copy, tmp_path, build={"on_error": "skip"}))
    skipped = {s["file"]: s["reason"] for s in summary.metadata["skipped"]}
    assert len(skipped) == 2
    assert "not a readable EDF file" in skipped["edf/train/zzzzzzzz/s001_2010/01_tcp_ar/zzzzzzzz_s001_t000.edf"]
    assert any("no annotation file" in reason for reason in skipped.values())
    assert not [r for r in skipped.values() if str(corpus_copy) in r], "machine paths in the metadata"
    assert "zzzzzzzz_s001_t000.edf: " in skipped["edf/train/zzzzzzzz/s001_2010/01_tcp_ar/zzzzzzzz_s001_t000.edf"]
    assert verify(summary.cache_dir, deep=True).ok


def test_a_patient_folder_copied_into_another_split_stops_the_build(base_config, corpus_copy, tmp_path):
    """Same file names in two splits: the duplicate-name check fires, naming both copies (a patient in two splits
    under new names is a case of tests/integration/test_bad_input.py). With on_error=skip no copy is built."""
    patient_dir = sorted((corpus_copy / "edf" / "train").iterdir())[0]
    shutil.copytree(patient_dir, corpus_copy / "edf" / "dev" / patient_dir.name)
    with pytest.raises(CorpusError, match=f"2 EDFs share the name {patient_dir.name}_s.*not montage folders") as err:
        run_build(make_config(base_config, corpus_copy, tmp_path / "fail"))
    assert err.value.path.startswith(str(corpus_copy / "edf" / "dev" / patient_dir.name))
    meta = run_build(make_config(base_config, corpus_copy, tmp_path / "skip", build={"on_error": "skip"})).metadata
    copies = {p.relative_to(corpus_copy).as_posix() for p in corpus_copy.glob(f"edf/*/{patient_dir.name}/**/*.edf")}
    assert {s["file"] for s in meta["skipped"]} == copies and len(copies) >= 2
    assert not any(e["patient"] == patient_dir.name for e in meta["files"].values())


def test_patient_disjoint_policy(base_config, demo_corpus, tmp_path):
    cfg = make_config(base_config, demo_corpus, tmp_path, data={"split_policy": "patient_disjoint", "dev_ratio": 0.5})
    meta = run_build(cfg).metadata
    assert meta["split_policy"] == "patient_disjoint"
    train_patients = {r.patient for r in corpus.discover(demo_corpus) if r.official_split == "train"}
    built = {e["patient"] for e in meta["files"].values() if e["split"] in ("train", "dev")}
    assert built == train_patients
    assert meta["excluded"] and all("official dev" in e["reason"] for e in meta["excluded"])
