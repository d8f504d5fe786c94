"""The sharded build (split_plan, build_share, merge_shards) on real EDF files: byte-identical to run_build,
concurrent shards, skipped recordings, and the merge's refusals."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import pickle
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from eegcache.builder.plan import make_plan
from eegcache.builder.run import run_build
from eegcache.builder.shards import build_share, merge_shards, share_of, split_plan
from eegcache.core import corpus, store
from eegcache.errors import AnnotationError, CacheError, ConfigError, CorpusError
from eegcache.versions.verify import verify
from tests.conftest import make_config
from tests.integration.test_build import _plant_junk, tree_bytes

pytestmark = pytest.mark.integration


def outputs(work: Path) -> dict[str, bytes]:
    """Every file of a build's results under ``work`` (make_config's layout): the cache and the metrics file (not
    the build lock beside the cache, which names the last holder)."""
    return {
        f"{part}/{rel}": data for part in ("cache/tusz", "metrics") for rel, data in tree_bytes(work / part).items()
    }


def sharded_build(cfg, shards: int, concurrent: bool = False) -> tuple[list[list[str]], dict]:
    """split_plan, build_share per share (in this process one after another, or each in its own process at
    once), merge_shards -> (the plan, the merged metadata)."""
    plan = [s.rels for s in split_plan(make_plan(cfg, Path()), shards)]
    if concurrent:
        # spawn: fresh interpreters, as separate containers would be; results come back pickled
        with ProcessPoolExecutor(len(plan), mp_context=multiprocessing.get_context("spawn")) as pool:
            results = list(pool.map(build_share, [cfg] * len(plan), [share_of(cfg, rels) for rels in plan]))
    else:
        results = [build_share(cfg, share_of(cfg, rels)) for rels in plan]
    return plan, merge_shards(cfg, results)


def durations(raw_dir: Path) -> dict[str, float]:
    """Output rel path -> annotated seconds, for every recording of a corpus under the official splits."""
    refs = corpus.discover(raw_dir)
    return {f"{r.official_split}/{r.bname}.npz": corpus.parse_annotation(r.annotation).duration_s for r in refs}


@pytest.fixture(scope="module")
def reference(base_config, demo_corpus, tmp_path_factory) -> dict[str, bytes]:
    work = tmp_path_factory.mktemp("reference")
    run_build(make_config(base_config, demo_corpus, work))
    return outputs(work)


@pytest.mark.parametrize("shards", [1, 3, 100])
def test_sharded_build_is_byte_identical_to_run_build(reference, base_config, demo_corpus, tmp_path, shards):
    recordings = len(durations(demo_corpus))
    assert 3 < recordings < 100, "the demo corpus should have more than 3 and fewer than 100 recordings"
    cfg = make_config(base_config, demo_corpus, tmp_path)
    plan, metadata = sharded_build(cfg, shards)
    assert len(plan) == min(shards, recordings)
    assert outputs(tmp_path) == reference
    assert metadata == json.loads(reference[f"cache/tusz/{store.METADATA_NAME}"])
    assert verify(tmp_path / "cache" / "tusz", deep=True).ok


def test_concurrent_shards_in_separate_processes(reference, base_config, demo_corpus, tmp_path):
    cfg = make_config(base_config, demo_corpus, tmp_path, build={"workers": 1})
    plan, _ = sharded_build(cfg, 2, concurrent=True)
    assert len(plan) == 2
    assert outputs(tmp_path) == reference


def test_work_planned_once_builds_in_other_processes_without_listing_the_corpus(
    reference, base_config, demo_corpus, tmp_path, monkeypatch
):
    """split_plan once, build_share per share in fresh interpreters (the work pickled, as to containers), then merge
    with that plan: byte-identical, and the corpus was listed only by the one make_plan here."""
    cfg = make_config(base_config, demo_corpus, tmp_path, build={"workers": 1})
    plan = make_plan(cfg, Path())
    work = split_plan(plan, 3)
    assert [share_of(cfg, w.rels) for w in work] == work  # a shard that plans for itself gets the same share
    assert pickle.loads(pickle.dumps(work)) == work
    with ProcessPoolExecutor(len(work), mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(pool.map(build_share, [cfg] * len(work), work))
    monkeypatch.setattr(corpus, "discover", lambda raw: pytest.fail(f"{raw} listed again"))
    merge_shards(cfg, results, Path(), plan)
    assert outputs(tmp_path) == reference


def test_build_share_refuses_work_planned_with_other_params_or_outside_the_raw_data(base_config, demo_corpus, tmp_path):
    cfg = make_config(base_config, demo_corpus, tmp_path)
    (work,) = split_plan(make_plan(cfg, Path()), 1)
    other = make_config(base_config, demo_corpus, tmp_path, preprocess={"dtype": "float32"})
    with pytest.raises(CacheError, match="other stage params or code"):
        build_share(other, work)
    task = dataclasses.replace(work.tasks[0], edf=Path("/etc/passwd"))
    with pytest.raises(CacheError, match="outside data.raw_dir"):
        build_share(cfg, dataclasses.replace(work, tasks=(task,)))
    assert not (tmp_path / "cache").exists()


def test_an_annotation_changed_after_planning_is_refused_not_built_with_the_planned_labels(
    base_config, corpus_copy, tmp_path
):
    """Planned once, built later (minutes apart on Modal): the labels a shard writes are the plan's parse, so an
    annotation edited in between would give a cache whose labels and recorded input digest disagree."""
    cfg = make_config(base_config, corpus_copy, tmp_path)
    (work,) = split_plan(make_plan(cfg, Path()), 1)
    edited = next(p for p in sorted(corpus_copy.rglob("*.csv_bi")) if ",seiz," in p.read_text())
    edited.write_text(edited.read_text().replace(",seiz,", ",bckg,"))
    with pytest.raises(AnnotationError, match="changed since the build was planned") as caught:
        build_share(cfg, work)
    assert caught.value.path == str(edited)


def _break_annotation(corpus_root: Path) -> Path:
    csv_bi = sorted(corpus_root.rglob("*.csv_bi"))[0]
    csv_bi.write_text(csv_bi.read_text().replace("csv_v1.0.0", "csv_v9.9.9"))
    return csv_bi


def test_skipped_recordings_are_recorded_as_run_build_records_them(base_config, corpus_copy, tmp_path):
    junk = _plant_junk(corpus_copy)
    bad = _break_annotation(corpus_copy)
    with pytest.raises(AnnotationError, match="csv_v9.9.9"):
        [s.rels for s in split_plan(make_plan(make_config(base_config, corpus_copy, tmp_path / "fail"), Path()), 2)]
    # what discovery refuses or does not enter is recorded the same way too
    stray = sorted(corpus_copy.rglob("*.edf"))[0]
    shutil.copy(stray, stray.parent / "recording copy (1).edf")
    (corpus_copy / "edf" / ".trash").mkdir()
    single = run_build(make_config(base_config, corpus_copy, tmp_path / "single", build={"on_error": "skip"}))
    cfg = make_config(base_config, corpus_copy, tmp_path / "sharded", build={"on_error": "skip"})
    plan = [s.rels for s in split_plan(make_plan(cfg, Path()), 3)]
    planned = [rel for rels in plan for rel in rels]
    assert "train/zzzzzzzz_s001_t000.npz" in planned and not any(bad.stem in rel for rel in planned)
    results = [build_share(cfg, share_of(cfg, rels)) for rels in plan]
    assert [s["file"] for r in results for s in r.skipped] == ["edf/train/zzzzzzzz/s001_2010/01_tcp_ar/" + junk.name]
    metadata = merge_shards(cfg, results)
    assert outputs(tmp_path / "sharded") == outputs(tmp_path / "single")
    assert metadata["skipped"] == single.metadata["skipped"] and len(metadata["skipped"]) == 3
    assert (
        metadata["unsearched"]
        == single.metadata["unsearched"]
        == [{"folder": "edf/.trash", "reason": "hidden folder: not searched"}]
    )
    assert metadata["raw_digest"] == single.metadata["raw_digest"]


@pytest.fixture
def two_shards(base_config, demo_corpus, tmp_path):
    """A demo corpus built as two shards into tmp_path, not merged yet -> (config, plan, results)."""
    cfg = make_config(base_config, demo_corpus, tmp_path)
    plan = [s.rels for s in split_plan(make_plan(cfg, Path()), 2)]
    return cfg, plan, [build_share(cfg, share_of(cfg, rels)) for rels in plan]


def test_merge_without_a_shard_names_the_missing_recordings(two_shards):
    cfg, plan, results = two_shards
    with pytest.raises(CacheError) as err:
        merge_shards(cfg, results[:1])
    message = str(err.value)
    assert f"{len(plan[1])} planned recording(s) in no shard result" in message
    assert all(rel in message for rel in plan[1]) and not any(rel in message for rel in plan[0])
    assert not (Path(cfg.build.out_dir) / store.METADATA_NAME).exists()


def test_merge_refuses_a_shard_given_twice(two_shards):
    cfg, plan, results = two_shards
    with pytest.raises(CacheError, match=f"{plan[0][0]} is in results 0 and 1"):
        merge_shards(cfg, [results[0], *results])


def test_merge_refuses_results_built_with_other_params(two_shards):
    cfg, _, results = two_shards
    work = Path(cfg.build.out_dir).parents[1]
    float32 = make_config(cfg, Path(cfg.data.raw_dir), work, preprocess={"dtype": "float32"})
    with pytest.raises(CacheError, match="built with other params, code or inputs"):
        merge_shards(float32, results)


def test_merge_refuses_missing_truncated_and_foreign_outputs(two_shards):
    cfg, plan, results = two_shards
    out_dir = Path(cfg.build.out_dir)
    (out_dir / plan[0][0]).unlink()
    truncated = out_dir / plan[1][0]
    truncated.write_bytes(truncated.read_bytes()[:-1])
    foreign = out_dir / "train" / "qqqqqqqq_s001_t000.npz"
    foreign.write_bytes(b"an output of some earlier build")
    with pytest.raises(CacheError) as err:
        merge_shards(cfg, results)
    assert f"{plan[0][0]} is missing" in str(err.value) and f"{plan[1][0]} has" in str(err.value)
    assert "train/qqqqqqqq_s001_t000.npz" in str(err.value) and foreign.exists()
    assert not (out_dir / store.METADATA_NAME).exists()


def test_merge_removes_only_leftovers_of_killed_writes(reference, two_shards):
    cfg, plan, results = two_shards
    out_dir = Path(cfg.build.out_dir)
    killed = (
        out_dir / Path(plan[0][0]).parent / f".{Path(plan[0][0]).name}{store.TMP_MARK}x1y2z3w4"
    )  # mkstemp adds 8 characters
    killed.write_bytes(b"half an output")  # what a shard killed inside store.atomic_write leaves
    (out_dir / store.JOURNAL_NAME).write_text("")  # and an interrupted run_build before it
    merge_shards(cfg, results)
    assert not killed.exists() and outputs(out_dir.parents[1]) == reference


def test_sharded_build_over_an_earlier_cache(reference, base_config, demo_corpus, tmp_path):
    """The first shard to start removes the earlier metadata (the cache is incomplete until the merge); the
    earlier outputs are rewritten, the merge accepts them."""
    cfg = make_config(base_config, demo_corpus, tmp_path)
    run_build(cfg)
    plan = [s.rels for s in split_plan(make_plan(cfg, Path()), 2)]
    results = [build_share(cfg, share_of(cfg, plan[0]))]
    assert not verify(tmp_path / "cache" / "tusz").ok
    merge_shards(cfg, [*results, build_share(cfg, share_of(cfg, plan[1]))])
    assert outputs(tmp_path) == reference


def test_share_of_names_an_unknown_recording(base_config, demo_corpus, tmp_path):
    cfg = make_config(base_config, demo_corpus, tmp_path)
    known = [s.rels for s in split_plan(make_plan(cfg, Path()), 1)][0][0]
    with pytest.raises(CorpusError, match="dev/nosuchpt_s001_t000.npz"):
        build_share(cfg, share_of(cfg, [known, "dev/nosuchpt_s001_t000.npz"]))
    assert not (tmp_path / "cache").exists()


def test_split_plan_is_deterministic_balanced_and_complete(base_config, demo_corpus, tmp_path):
    cfg = make_config(base_config, demo_corpus, tmp_path)
    seconds = durations(demo_corpus)
    for shards in (1, 2, 3, len(seconds), len(seconds) + 4):
        plan = [s.rels for s in split_plan(make_plan(cfg, Path()), shards)]
        assert plan == [s.rels for s in split_plan(make_plan(cfg, Path()), shards)]
        assert len(plan) == min(shards, len(seconds)) and all(plan)
        assert sorted(rel for rels in plan for rel in rels) == sorted(seconds)  # each recording exactly once
        assert all(rels == sorted(rels) for rels in plan)
        loads = [sum(seconds[rel] for rel in rels) for rels in plan]
        # greedy longest-first: each shard's shortest recording came last and went to the then emptiest shard,
        # so without it no shard holds more than the emptiest shard holds in the end
        assert all(load - min(seconds[rel] for rel in rels) <= min(loads) for load, rels in zip(loads, plan))
    assert not (tmp_path / "cache").exists()
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ConfigError, match="shards"):
            [s.rels for s in split_plan(make_plan(cfg, Path()), bad)]


def test_split_plan_fails_like_run_build_on_a_split_leak(base_config, corpus_copy, tmp_path):
    """A new session of a train patient under dev (a new name, so it is the split check that fires)."""
    edf = sorted((corpus_copy / "edf" / "train").rglob("*.edf"))[0]
    patient, bname = edf.parents[2].name, f"{edf.parents[2].name}_s009_t000"
    folder = corpus_copy / "edf" / "dev" / patient / "s009_2015" / "01_tcp_ar"
    folder.mkdir(parents=True)
    (folder / f"{bname}.edf").write_bytes(edf.read_bytes())
    csv_bi = edf.with_suffix(".csv_bi").read_text()
    (folder / f"{bname}.csv_bi").write_text(csv_bi.replace(f"bname = {edf.stem}", f"bname = {bname}"))
    cfg = make_config(base_config, corpus_copy, tmp_path)
    with pytest.raises(CorpusError, match=f"patient {patient} appears in train and dev"):
        run_build(cfg)
    with pytest.raises(CorpusError, match=f"patient {patient} appears in train and dev"):
        [s.rels for s in split_plan(make_plan(cfg, Path()), 2)]
