"""What discovery refuses or sets aside, through the real build (``run_build``, the sharded build and the
``eegcache build`` CLI) on real EDF files: misnamed and stray EDFs, duplicates across montage folders (both
policies) and across sessions, FIFOs, links to /dev/zero and out of the corpus, hidden and linked folders, and a
build that ends with no recording. Each case states which files are built and what ``skipped`` says.

The corpus is three real recordings of the demo corpus (the first train patient's one, the first eval patient's
two); the cases add files beside them.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from eegcache.builder.plan import make_plan
from eegcache.builder.run import run_build
from eegcache.builder.shards import build_share, merge_shards, share_of, split_plan
from eegcache.core import corpus, store
from eegcache.errors import AnnotationError, CorpusError
from eegcache.versions.verify import verify
from tests.conftest import REPO, make_config
from tests.integration.test_bad_input import eeg_edf
from tests.unit.core.test_discover import unreadable_folder

pytestmark = pytest.mark.integration
NAME_RULE = "EDF name does not follow <patient>_sNNN_tNNN.edf (patient = 8 lowercase letters)"


@pytest.fixture
def small(demo_corpus, tmp_path) -> Path:
    root = tmp_path / "corpus"
    for split in ("train", "eval"):
        patient = sorted((demo_corpus / "edf" / split).iterdir())[0]
        shutil.copytree(patient, root / "edf" / split / patient.name)
    return root


def train_ref(root: Path) -> corpus.RecordingRef:
    return next(r for r in corpus.survey(root).refs if r.official_split == "train")


def outputs(root: Path, but: str = "") -> set[str]:
    """The output of every recording of the clean corpus (``but`` the one with that bname)."""
    return {f"{r.official_split}/{r.bname}{store.SUFFIX}" for r in corpus.survey(root).refs if r.bname != but}


def copy_recording(ref: corpus.RecordingRef, folder: Path, bname: str | None = None) -> Path:
    """The EDF and both annotations of ``ref`` copied into ``folder`` (renamed to ``bname``) -> the new EDF."""
    bname = bname or ref.bname
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(ref.edf, folder / f"{bname}.edf")
    for suffix in corpus.ANNOTATION_SUFFIXES:
        text = ref.edf.with_suffix(suffix).read_text()
        (folder / f"{bname}{suffix}").write_text(text.replace(f"# bname = {ref.bname}", f"# bname = {bname}"))
    return folder / f"{bname}.edf"


def build(root: Path, work: Path, base_config, on_error: str = "skip", **data):
    cfg = make_config(base_config, root, work, build={"on_error": on_error, "workers": 1}, data=data)
    return cfg, run_build(cfg)


def skipped_of(meta: dict) -> dict[str, str]:
    return {s["file"]: s["reason"] for s in meta["skipped"]}


def rel(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


# --- misnamed and stray EDFs -----------------------------------------------------------------------------------


def misnamed_copy(root: Path) -> tuple[Path, str]:
    ref = train_ref(root)
    copy = ref.edf.parent / "recording copy (1).edf"
    shutil.copy(ref.edf, copy)
    return copy, f"recording copy (1).edf: {NAME_RULE}: 'recording copy (1).edf'"


def outside_the_splits(root: Path) -> tuple[Path, str]:
    ref = train_ref(root)
    edf = copy_recording(ref, root / "edf" / "extra", f"{ref.patient}_s009_t000")
    return edf, f"{edf.name}: EDF is not under a train/dev/eval folder below the corpus root"


STRAYS = {"misnamed copy": misnamed_copy, "EDF outside train/dev/eval": outside_the_splits}


@pytest.mark.parametrize("plant", STRAYS.values(), ids=STRAYS.keys())
def test_a_stray_edf_is_skipped_and_the_rest_built(plant, small, base_config, tmp_path):
    stray, reason = plant(small)
    cfg, summary = build(small, tmp_path / "work", base_config)
    meta = summary.metadata
    assert set(meta["files"]) == outputs(small)  # all three recordings, the stray in none
    assert meta["skipped"] == [{"file": rel(small, stray), "reason": reason}]
    assert meta["raw_recordings"] == 3 and verify(summary.cache_dir, deep=True).ok


@pytest.mark.parametrize("plant", STRAYS.values(), ids=STRAYS.keys())
def test_a_stray_edf_stops_a_build_that_fails_on_errors_naming_it(plant, small, base_config, tmp_path):
    stray, reason = plant(small)
    with pytest.raises(CorpusError) as err:
        build(small, tmp_path / "work", base_config, on_error="fail")
    assert str(err.value) == f"{stray}: {reason.split(': ', 1)[1]}"
    assert not (tmp_path / "work" / "cache" / "tusz").exists()  # nothing written


# --- duplicates --------------------------------------------------------------------------------------------------


def montage_duplicate(root: Path) -> tuple[corpus.RecordingRef, Path]:
    """The train recording also under the 03_tcp_ar_a folder of its session (as TUSZ v2.0.0/v2.0.1 shipped), as a
    different, 30 s real EDF, so the metadata tells which copy was built."""
    ref = train_ref(root)
    assert ref.edf.parent.name == "01_tcp_ar"
    folder = ref.edf.parent.parent / "03_tcp_ar_a"
    folder.mkdir()
    (folder / f"{ref.bname}.csv_bi").write_text(
        f"# version = csv_v1.0.0\n# bname = {ref.bname}\n# duration = 30.0000 secs\n#\n"
        f"{','.join(corpus.COLUMNS)}\nTERM,0.0000,30.0000,bckg,1.0000\n"
    )
    return ref, eeg_edf(folder / f"{ref.bname}.edf", [("EEG FP1-REF", 250), ("EEG F7-REF", 250)], 30.0)


@pytest.mark.parametrize("on_error", ["skip", "fail"])
def test_montage_duplicates_keep_the_preferred_folder(on_error, small, base_config, tmp_path):
    """Default preference (01_tcp_ar first): the 01_tcp_ar copy is built and the other listed as skipped, under
    either on_error (the config settled it); preferring 03_tcp_ar_a builds the other copy."""
    ref, other = montage_duplicate(small)
    out = f"train/{ref.bname}{store.SUFFIX}"
    _, summary = build(small, tmp_path / "a", base_config, on_error=on_error)
    meta = summary.metadata
    assert set(meta["files"]) == outputs(small) and meta["files"][out]["seconds"] > 30  # the demo's, 1-2 min
    assert meta["skipped"] == [
        {
            "file": rel(small, other),
            "reason": (
                f"{ref.bname}.edf: duplicate of {ref.relpath}, montage folder 01_tcp_ar preferred "
                "(data.prefer_montage_folders)"
            ),
        }
    ]
    _, summary = build(small, tmp_path / "b", base_config, prefer_montage_folders=("03_tcp_ar_a", "01_tcp_ar"))
    assert summary.metadata["files"][out]["seconds"] == 30.0  # the 03_tcp_ar_a copy
    assert [s["file"] for s in summary.metadata["skipped"]] == [ref.relpath]
    assert verify(summary.cache_dir, deep=True).ok


def test_montage_duplicates_without_a_preference_build_no_copy(small, base_config, tmp_path):
    ref, other = montage_duplicate(small)
    _, summary = build(small, tmp_path / "skip", base_config, prefer_montage_folders=())
    assert set(summary.metadata["files"]) == outputs(small, but=ref.bname)  # the two eval recordings
    why = (
        f"{ref.bname}.edf: 2 EDFs share the name {ref.bname} ({ref.relpath}, {rel(small, other)}); none is built: "
        "no montage folder of data.prefer_montage_folders among them"
    )
    assert skipped_of(summary.metadata) == {ref.relpath: why, rel(small, other): why}
    with pytest.raises(CorpusError, match=f"2 EDFs share the name {ref.bname}") as err:
        build(small, tmp_path / "fail", base_config, on_error="fail", prefer_montage_folders=())
    assert err.value.path == str(ref.edf)


def test_a_duplicate_across_sessions_builds_no_copy(small, base_config, tmp_path):
    ref = train_ref(small)
    copy = copy_recording(ref, small / "edf/train" / ref.patient / "s009_2015" / "01_tcp_ar")
    _, summary = build(small, tmp_path / "skip", base_config)
    assert set(summary.metadata["files"]) == outputs(small, but=ref.bname)
    why = (
        f"{ref.bname}.edf: 2 EDFs share the name {ref.bname} ({ref.relpath}, {rel(small, copy)}); none is built: "
        "not montage folders of one session"
    )
    assert skipped_of(summary.metadata) == {ref.relpath: why, rel(small, copy): why}
    assert verify(summary.cache_dir, deep=True).ok
    with pytest.raises(CorpusError, match="not montage folders of one session"):
        build(small, tmp_path / "fail", base_config, on_error="fail")


# --- a bad annotation beside a discovery problem -----------------------------------------------------------------


def test_a_bad_annotation_is_skipped_beside_a_stray_or_stops_the_build(small, base_config, tmp_path):
    stray, stray_reason = misnamed_copy(small)
    victim = next(r for r in corpus.survey(small).refs if r.official_split == "eval")
    victim.annotation.write_text(victim.annotation.read_text().replace("csv_v1.0.0", "csv_v9"))
    _, summary = build(small, tmp_path / "skip", base_config)
    assert set(summary.metadata["files"]) == outputs(small, but=victim.bname)
    assert skipped_of(summary.metadata) == {
        rel(small, stray): stray_reason,
        victim.relpath: f"{victim.bname}.csv_bi:1: unsupported annotation version 'csv_v9'; expected csv_v1.0.0",
    }
    stray.unlink()  # alone, the annotation stops a build that fails on errors
    with pytest.raises(AnnotationError, match="unsupported annotation version") as err:
        build(small, tmp_path / "fail", base_config, on_error="fail")
    assert err.value.path == str(victim.annotation)


# --- regular files only (the CLI, in a child process with a timeout: a regression must fail, not hang) ------------


EEGCACHE = [sys.executable, "-m", "eegcache.cli"]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A working folder with the repository's conf/ (never this machine's conf/local)."""
    root = tmp_path_factory.mktemp("project")
    shutil.copytree(REPO / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    return root


def cli(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*EEGCACHE, *args], cwd=project, capture_output=True, text=True, timeout=300)


def cli_build(project: Path, root: Path, work: Path, *extra: str) -> subprocess.CompletedProcess:
    return cli(
        project,
        "build",
        f"data.raw_dir={root}",
        f"build.out_dir={work / 'cache'}",
        f"build.state_dir={work / 'state'}",
        f"build.metrics_file={work / 'metrics.json'}",
        "build.workers=1",
        "build.progress=false",
        *extra,
    )


def test_fifos_devices_and_links_out_of_the_corpus_are_refused(small, project, tmp_path):
    """Four new recordings of the train patient that are not regular files inside the corpus: a FIFO, a link to
    /dev/zero (the build hung on it), a link to a real EDF outside raw_dir, and a real EDF whose .csv_bi is a FIFO.
    ``skip``: each listed with its reason, the three real recordings built; ``fail``: exit 2 naming the first."""
    ref = train_ref(small)
    folder = ref.edf.parent
    names = [f"{ref.patient}_s001_t00{i}" for i in range(1, 5)]
    os.mkfifo(folder / f"{names[0]}.edf")
    (folder / f"{names[1]}.edf").symlink_to("/dev/zero")
    outside = copy_recording(ref, tmp_path / "elsewhere", names[2])
    (folder / f"{names[2]}.edf").symlink_to(outside)
    shutil.copy(outside.with_suffix(".csv_bi"), folder / f"{names[2]}.csv_bi")
    copy_recording(ref, folder, names[3]).with_suffix(".csv_bi").unlink()
    os.mkfifo(folder / f"{names[3]}.csv_bi")
    proc = cli_build(project, small, tmp_path / "skip", "build.on_error=skip")
    assert proc.returncode == 0, proc.stderr
    meta = store.read_metadata(tmp_path / "skip" / "cache")
    assert set(meta["files"]) == outputs(small)
    outside_why = "symbolic link to a file outside the corpus root (data.raw_dir): not followed"
    assert skipped_of(meta) == {
        rel(small, folder / f"{names[0]}.edf"): f"{names[0]}.edf: not a regular file: a FIFO (named pipe)",
        rel(small, folder / f"{names[1]}.edf"): f"{names[1]}.edf: {outside_why}",
        rel(small, folder / f"{names[2]}.edf"): f"{names[2]}.edf: {outside_why}",
        rel(small, folder / f"{names[3]}.edf"): f"{names[3]}.csv_bi: not a regular file: a FIFO (named pipe)",
    }
    printed = " ".join(proc.stdout.split())  # the summary wraps long lines
    assert f"skipped {rel(small, folder / f'{names[1]}.edf')}: {names[1]}.edf: {outside_why}" in printed
    proc = cli_build(project, small, tmp_path / "fail", "build.on_error=fail")
    assert proc.returncode == 2
    assert f"error: {folder / names[0]}.edf: not a regular file: a FIFO (named pipe)" in proc.stderr
    assert not (tmp_path / "fail" / "cache").exists()


# --- folders discovery does not enter ------------------------------------------------------------------------------


def test_hidden_folders_are_reported_and_recorded(small, base_config, tmp_path, caplog):
    """A hidden copy of a patient (``.backup``) is not entered: the build warns, records it in the metadata's
    ``unsearched``, and builds the rest, the same metadata on a rerun."""
    ref = train_ref(small)
    shutil.copytree(small / "edf/train" / ref.patient, small / "edf/train/.backup" / ref.patient)
    with caplog.at_level(logging.WARNING, logger="eegcache"):
        cfg, summary = build(small, tmp_path / "work", base_config, on_error="fail")
    meta = summary.metadata
    assert set(meta["files"]) == outputs(small) and meta["skipped"] == []
    assert meta["unsearched"] == [{"folder": "edf/train/.backup", "reason": "hidden folder: not searched"}]
    assert f"{small / 'edf/train/.backup'}: hidden folder: not searched" in caplog.text
    first = (summary.cache_dir / store.METADATA_NAME).read_bytes()
    assert (run_build(cfg).cache_dir / store.METADATA_NAME).read_bytes() == first


@pytest.mark.parametrize("on_error", ["fail", "skip"])
def test_a_split_folder_that_is_a_link_stops_the_build_naming_it(small, base_config, tmp_path, on_error):
    """``edf/train -> /disk2/train`` (a corpus spread over disks) and a patient folder that is a link: never a
    cache silently short of a split, whatever on_error says; nothing is written; the error says what works."""
    elsewhere = tmp_path / "elsewhere" / "aaazzzzz"
    copy_recording(train_ref(small), elsewhere / "s001_2015" / "01_tcp_ar", "aaazzzzz_s001_t000")
    disk2 = tmp_path / "disk2"
    disk2.mkdir()
    shutil.move(small / "edf/train", disk2 / "train")
    (small / "edf/train").symlink_to(disk2 / "train")
    (small / "edf/eval/aaazzzzz").symlink_to(elsewhere)
    with pytest.raises(CorpusError) as refused:
        build(small, tmp_path / "work", base_config, on_error=on_error)
    message = str(refused.value)
    assert message.startswith(f"{small}: 2 folder(s) below the corpus root are symbolic links")
    assert f"edf/eval/aaazzzzz -> {elsewhere}" in message and f"edf/train -> {disk2 / 'train'}" in message
    assert "paths.data_dir" in message and "DVC would not see their changes" in message
    assert not (tmp_path / "work").exists() or not any((tmp_path / "work").rglob("*.npz"))


def test_a_folder_that_cannot_be_read_is_skipped_or_stops_the_build_naming_it(small, base_config, tmp_path, caplog):
    """A folder of the corpus that cannot be listed (here: past PATH_MAX, as tests run as root) is that folder's
    problem, like an unreadable file: skip builds the rest and records it in ``unsearched``; fail stops naming it.
    It stopped the build under skip too before."""
    deep = unreadable_folder(small / "edf/train" / train_ref(small).patient)
    folder = f"edf/train/{train_ref(small).patient}/{deep}"
    with pytest.raises(CorpusError, match="cannot read folder: File name too long") as err:
        build(small, tmp_path / "fail", base_config, on_error="fail")
    assert err.value.path == str(small / folder)
    with caplog.at_level(logging.WARNING, logger="eegcache"):
        _, summary = build(small, tmp_path / "skip", base_config)
    meta = summary.metadata
    assert set(meta["files"]) == outputs(small) and meta["skipped"] == []
    assert meta["unsearched"] == [{"folder": folder, "reason": "cannot read folder: File name too long"}]
    assert "cannot read folder: File name too long (no recording in it is built)" in caplog.text


# --- no recording built ----------------------------------------------------------------------------------------------


def test_nothing_to_build_fails_before_touching_an_earlier_cache(small, base_config, tmp_path):
    """Every EDF renamed badly: with skip, nothing is left to build; the build fails naming the count and the first
    reasons, and the earlier cache in out_dir is left as it was (still valid)."""
    cfg, first = build(small, tmp_path / "work", base_config)
    before = (first.cache_dir / store.METADATA_NAME).read_bytes()
    for edf in sorted(small.rglob("*.edf")):
        edf.rename(edf.with_name(edf.stem.upper() + ".edf"))
    with pytest.raises(CorpusError) as err:
        run_build(cfg)
    message = str(err.value)
    assert message.startswith(f"{small}: no recording was built: 3 skipped, 0 excluded by the split policy")
    assert "nothing was written; first skipped: edf/eval/" in message and NAME_RULE in message
    assert (first.cache_dir / store.METADATA_NAME).read_bytes() == before and verify(first.cache_dir, deep=True).ok


def garbage(root: Path) -> None:
    for edf in root.rglob("*.edf"):
        edf.write_bytes(b"not an EDF file" * 30)


def test_every_recording_failing_is_a_failed_build_and_an_invalid_cache(small, project, tmp_path):
    """Every EDF unreadable: the build runs, skips all three, writes the metadata with their reasons, exits 2 (CLI)
    naming it; verify (fast and deep) rejects the cache: it holds no recording."""
    garbage(small)
    work = tmp_path / "work"
    proc = cli_build(project, small, work, "build.on_error=skip")
    assert proc.returncode == 2
    metadata = work / "cache" / store.METADATA_NAME
    assert f"error: {metadata}: no recording was built: 3 skipped, 0 excluded by the split policy" in proc.stderr
    assert "the reasons are listed under 'skipped' in this metadata, which verify rejects" in proc.stderr
    meta = json.loads(metadata.read_text())
    assert meta["files"] == {} and len(meta["skipped"]) == 3
    assert all("not a readable EDF file" in s["reason"] for s in meta["skipped"])
    for deep in ([], ["--deep"]):
        proc = cli(project, "verify", str(work / "cache"), *deep)
        assert proc.returncode == 1 and "the cache holds no recording (3 skipped" in proc.stdout, proc.stdout


def test_a_sharded_build_with_no_recording_fails_at_the_merge(small, base_config, tmp_path):
    garbage(small)
    cfg = make_config(base_config, small, tmp_path / "work", build={"on_error": "skip", "workers": 1})
    results = [
        build_share(cfg, share_of(cfg, rels)) for rels in [s.rels for s in split_plan(make_plan(cfg, Path()), 2)]
    ]
    assert sum(len(r.skipped) for r in results) == 3 and not any(r.entries for r in results)
    with pytest.raises(CorpusError, match="no recording was built: 3 skipped"):
        merge_shards(cfg, results)
    assert not verify(Path(cfg.build.out_dir)).ok
