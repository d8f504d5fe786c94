"""bench/fabricate_tusz.py, scaled down: the layout holds the intended counts, hours and montage folders and plans
as a real corpus does; its cache files are the store's bytes for an all-zero EEG and verify as a cache."""

from __future__ import annotations

import collections
import sys

import numpy as np
import pytest

from eegcache.core import montage, store
from tests.conftest import REPO, make_config

sys.path.insert(0, str(REPO / "bench"))
import fabricate_tusz as fab

from eegcache.builder.plan import make_plan
from eegcache.versions import verify

FACTS = fab.TUSZ_V203.scaled(0.02)


@pytest.fixture(scope="module")
def recordings() -> list:
    return fab.plan_layout(FACTS, seed=3)


def test_full_scale_facts_add_up():
    assert fab.TUSZ_V203.files == 7361 and sum(fab.TUSZ_V203.montages.values()) == 7361
    assert round(fab.TUSZ_V203.hours, 1) == 1473.6


def test_layout_has_the_intended_counts(recordings):
    assert len({r.bname for r in recordings}) == len(recordings) == FACTS.files == 147
    for split, facts in FACTS.splits.items():
        mine = [r for r in recordings if r.split == split]
        assert len(mine) == facts.files
        assert len({r.patient.pid for r in mine}) == facts.patients
        assert sum(r.duration_s for r in mine) == round(facts.hours * 3600)
        seizure_s = sum(s.stop_s - s.start_s for r in mine for s in r.seizures)
        assert seizure_s == pytest.approx(facts.seizure_hours * 3600, abs=0.01)
    assert collections.Counter(r.session.montage_dir for r in recordings) == FACTS.montages
    assert sum("FZ" not in r.electrodes and "PZ" not in r.electrodes for r in recordings) == FACTS.no_midline
    ears = {r.session.montage_dir == "03_tcp_ar_a" for r in recordings if "A1" not in r.electrodes}
    assert ears == {True}


def test_layout_plans_like_a_corpus(recordings, base_config, tmp_path):
    fab.write_layout(recordings, tmp_path / "corpus", FACTS.raw_bytes)
    edfs = sorted((tmp_path / "corpus").rglob("*.edf"))
    assert len(edfs) == 147 and sum(p.stat().st_size for p in edfs) == pytest.approx(FACTS.raw_bytes, rel=1e-6)
    assert all(p.with_suffix(".csv").is_file() and p.with_suffix(".csv_bi").is_file() for p in edfs)
    plan = make_plan(make_config(base_config, tmp_path / "corpus", tmp_path), tmp_path)
    assert len(plan.tasks) == 147 and not plan.skipped
    assert sum(t.annotation_duration_s for t in plan.tasks) == sum(r.duration_s for r in recordings)
    planned_seizures = sum(b - a for t in plan.tasks for a, b in t.seizures)
    assert planned_seizures == pytest.approx(sum(f.seizure_hours for f in FACTS.splits.values()) * 3600, abs=0.01)


@pytest.mark.parametrize(
    "samples, name, zero_filled", [(37, "ref19", ("FZ", "PZ")), (30_000, "tcp22", ("A1-T3", "T4-A2"))]
)
def test_sparse_file_is_the_stores_encoding_of_zeros(tmp_path, samples, name, zero_filled):
    labels = np.zeros(samples, dtype=np.uint8)
    labels[samples // 3 : samples // 2] = 1
    facts = store.RecordingFacts(200.0, montage.channel_names(name), zero_filled, samples / 200)
    size = fab.write_zero_recording(tmp_path / "x.npz", labels, facts, "float16")
    expected = store.encode_recording(np.zeros((len(facts.channels), samples), np.float16), labels, facts)
    assert size == len(expected) and (tmp_path / "x.npz").read_bytes() == expected


def test_cache_verifies_and_describes_the_recordings(recordings, tmp_path):
    some = recordings[:12]
    metadata = fab.write_cache(some, tmp_path / "cache", ["preprocess=tcp22"], workers=1)
    verdict = verify.verify(tmp_path / "cache", deep=True)
    assert verdict.ok and verdict.files == 12, verdict.problems
    for r in some:
        entry = metadata["files"][f"{r.split}/{r.bname}.npz"]
        assert entry["samples"] == r.duration_s * 200
        assert entry["zero_filled"] == (["A1-T3", "T4-A2"] if "A1" not in r.electrodes else [])
        assert entry["seizure_seconds"] == pytest.approx(sum(s.stop_s - s.start_s for s in r.seizures), abs=0.01)
