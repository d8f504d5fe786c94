"""discover: each EDF judged on its own (names, file types, links, duplicates); folders not entered are reported.
Files are tiny and written under tmp_path (discovery never opens them); the real build runs these cases in
tests/integration/test_discovery_build.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from eegcache.config import DataConfig
from eegcache.core import discover
from eegcache.errors import CorpusError
from tests.unit.core.test_corpus import write, write_recording

SESSION = "edf/eval/aaaaaqvx/s003_2015_08_24"
BNAME = "aaaaaqvx_s003_t000"


def reasons(found: discover.Survey) -> dict[str, str]:
    return {p.relpath: p.error.reason for p in found.problems}


@pytest.fixture
def root(tmp_path) -> Path:
    """One good recording to build beside each case."""
    write_recording(tmp_path / "edf/train/aaaaaaab/s001_2003/01_tcp_ar", "aaaaaaab_s001_t000")
    return tmp_path


GOOD = "edf/train/aaaaaaab/s001_2003/01_tcp_ar/aaaaaaab_s001_t000.edf"


def test_a_clean_corpus_has_no_problems(root):
    found = discover.survey(root)
    assert [r.relpath for r in found.refs] == [GOOD]
    assert (found.problems, found.superseded, found.unsearched) == ([], [], [])


def test_misnamed_and_stray_edfs_are_problems_of_their_own_files(root):
    write(root / "edf/train/aaaaaaab/s001_2003/01_tcp_ar/recording copy (1).edf")
    write(root / "edf/extra/aaaaaaaz_s001_t000.edf")
    found = discover.survey(root)
    assert [r.relpath for r in found.refs] == [GOOD]
    assert reasons(found) == {
        "edf/extra/aaaaaaaz_s001_t000.edf": "EDF is not under a train/dev/eval folder below the corpus root",
        "edf/train/aaaaaaab/s001_2003/01_tcp_ar/recording copy (1).edf": "EDF name does not follow <patient>_sNNN_tNNN.edf (patient = 8 lowercase letters): 'recording copy (1).edf'",
    }
    assert found.problems[0].error.path == str(root / "edf/extra/aaaaaaaz_s001_t000.edf")
    with pytest.raises(CorpusError, match="not under a train/dev/eval folder"):  # the strict form raises the first
        discover.discover(root)


def test_an_upper_case_extension_is_an_edf_found_and_refused_by_name(root):
    """``.EDF`` (a copy through a tool that changes case) is reported, not passed over as if it were no EDF."""
    folder = root / "edf/dev/aaaaaaac/s001_2010/01_tcp_ar"
    write_recording(folder, "aaaaaaac_s001_t000")
    (folder / "aaaaaaac_s001_t000.edf").rename(folder / "aaaaaaac_s001_t000.EDF")
    write(folder / "aaaaaaac_s001_t001.Edf")
    found = discover.survey(root)
    assert [r.relpath for r in found.refs] == [GOOD]
    rule = "EDF name does not follow <patient>_sNNN_tNNN.edf (patient = 8 lowercase letters)"
    assert reasons(found) == {
        f"edf/dev/aaaaaaac/s001_2010/01_tcp_ar/aaaaaaac_s001_t00{n}": f"{rule}: 'aaaaaaac_s001_t00{n}'"
        for n in ("0.EDF", "1.Edf")
    }


def test_montage_folder_duplicates_keep_the_preferred_folder(root):
    for folder in ("03_tcp_ar_a", "01_tcp_ar"):
        write_recording(root / SESSION / folder, BNAME)
    found = discover.survey(root)
    assert [r.relpath for r in found.refs] == [f"{SESSION}/01_tcp_ar/{BNAME}.edf", GOOD]
    assert found.problems == []
    assert [(p.relpath, p.error.reason) for p in found.superseded] == [
        (
            f"{SESSION}/03_tcp_ar_a/{BNAME}.edf",
            f"duplicate of {SESSION}/01_tcp_ar/{BNAME}.edf, montage folder 01_tcp_ar preferred (data.prefer_montage_folders)",
        )
    ]
    assert found.refs[0].annotation == root / SESSION / "01_tcp_ar" / f"{BNAME}.csv_bi"  # its own annotation
    # another order keeps another copy; no preference, or none among the copies, builds none
    kept = discover.survey(root, prefer=("03_tcp_ar_a",)).refs[0]
    assert kept.relpath == f"{SESSION}/03_tcp_ar_a/{BNAME}.edf"
    for prefer in ((), ("02_tcp_le",)):
        found = discover.survey(root, prefer=prefer)
        assert [r.relpath for r in found.refs] == [GOOD] and found.superseded == []
        assert sorted(reasons(found)) == [f"{SESSION}/01_tcp_ar/{BNAME}.edf", f"{SESSION}/03_tcp_ar_a/{BNAME}.edf"]
        assert all(
            r.endswith("none is built: no montage folder of data.prefer_montage_folders among them")
            for r in reasons(found).values()
        )


def test_duplicates_across_sessions_or_splits_build_no_copy(root):
    write_recording(root / "edf/train/aaaaaaab/s001_2003/02_tcp_le", "aaaaaaab_s001_t000")  # sibling: settled
    write_recording(root / "edf/dev/aaaaaaab/s001_2003/01_tcp_ar", "aaaaaaab_s001_t000")  # another split: not
    found = discover.survey(root)
    assert found.refs == [] and found.superseded == []
    copies = [
        "edf/dev/aaaaaaab/s001_2003/01_tcp_ar/aaaaaaab_s001_t000.edf",
        GOOD,
        "edf/train/aaaaaaab/s001_2003/02_tcp_le/aaaaaaab_s001_t000.edf",
    ]
    assert sorted(reasons(found)) == sorted(copies)
    assert reasons(found)[GOOD] == (
        f"3 EDFs share the name aaaaaaab_s001_t000 ({', '.join(copies)}); none is built: "
        "not montage folders of one session"
    )


def test_fifo_socket_and_folder_named_edf_are_not_regular_files(root):
    folder = root / "edf/dev/aaaaaaac/s001_2010/01_tcp_ar"
    folder.mkdir(parents=True)
    os.mkfifo(folder / "aaaaaaac_s001_t000.edf")
    write_recording(root / "edf/dev/aaaaaaad/s001_2010/01_tcp_ar", "aaaaaaad_s001_t000")
    annotation = root / "edf/dev/aaaaaaad/s001_2010/01_tcp_ar/aaaaaaad_s001_t000.csv_bi"
    annotation.unlink()
    os.mkfifo(annotation)
    found = discover.survey(root)
    assert [r.relpath for r in found.refs] == [GOOD]
    assert reasons(found) == {
        "edf/dev/aaaaaaac/s001_2010/01_tcp_ar/aaaaaaac_s001_t000.edf": "not a regular file: a FIFO (named pipe)",
        "edf/dev/aaaaaaad/s001_2010/01_tcp_ar/aaaaaaad_s001_t000.edf": "not a regular file: a FIFO (named pipe)",
    }
    # the annotation's problem names the annotation
    assert found.problems[1].error.path == str(annotation)


def test_links_are_followed_only_to_regular_files_inside_the_root(root, tmp_path_factory):
    outside = write(tmp_path_factory.mktemp("elsewhere") / "aaaaaaae_s001_t000.edf", "x")
    folder = root / "edf/eval/aaaaaaae/s001_2010/01_tcp_ar"
    folder.mkdir(parents=True)
    links = {
        "aaaaaaae_s001_t000": outside,
        "aaaaaaae_s001_t001": Path("/dev/zero"),
        "aaaaaaae_s001_t002": root / GOOD,
        "aaaaaaae_s001_t003": folder / "fifo",
    }
    os.mkfifo(folder / "fifo")
    for bname, target in links.items():
        (folder / f"{bname}.edf").symlink_to(target)
    found = discover.survey(root)
    rel = "edf/eval/aaaaaaae/s001_2010/01_tcp_ar/aaaaaaae_s001_t00"
    assert [r.relpath for r in found.refs] == [f"{rel}2.edf", GOOD]  # a link to a file inside the root: followed
    outside_reason = "symbolic link to a file outside the corpus root (data.raw_dir): not followed"
    assert reasons(found) == {
        f"{rel}0.edf": outside_reason,
        f"{rel}1.edf": outside_reason,
        f"{rel}3.edf": "symbolic link to a FIFO (named pipe), not to a regular file",
    }


def test_a_root_reached_through_a_link_still_contains_its_files(root, tmp_path_factory):
    link = tmp_path_factory.mktemp("links") / "corpus"
    link.symlink_to(root)
    (root / "edf/train/aaaaaaab/s001_2003/01_tcp_ar/inner.edf").symlink_to(root / GOOD)  # misnamed, but inside
    found = discover.survey(link)
    assert [r.relpath for r in found.refs] == [GOOD]
    assert [p.error.reason[:27] for p in found.problems] == ["EDF name does not follow <p"]


def test_hidden_and_linked_folders_are_reported_not_entered(root, tmp_path_factory):
    write_recording(root / "edf/train/.hidden/s001_2003/01_tcp_ar", "aaaaaaaf_s001_t000")
    elsewhere = tmp_path_factory.mktemp("patients") / "aaaaaaag"
    write_recording(elsewhere / "s001_2003/01_tcp_ar", "aaaaaaag_s001_t000")
    (root / "edf/train/aaaaaaag").symlink_to(elsewhere)
    (root / "edf/train/aaaaaaab/alias").symlink_to(root / "edf/train/aaaaaaab/s001_2003")  # inside, but a loop risk
    write(root / "edf/train/aaaaaaab/s001_2003/01_tcp_ar/._aaaaaaab_s001_t000.edf")  # a macOS shadow: not a recording
    found = discover.survey(root)
    assert [r.relpath for r in found.refs] == [GOOD] and found.problems == []
    assert found.unsearched == [
        ("edf/train/.hidden", "hidden folder: not searched"),
        ("edf/train/aaaaaaab/alias", "symbolic link to a folder: not followed"),
        ("edf/train/aaaaaaag", "symbolic link to a folder: not followed"),
    ]


def test_only_corpus_wide_problems_raise(tmp_path, tmp_path_factory):
    with pytest.raises(CorpusError, match="corpus root is not a folder"):
        discover.survey(tmp_path / "missing")
    write(tmp_path / "edf/train/notes.txt", "x")
    with pytest.raises(CorpusError, match="no .edf files found"):
        discover.survey(tmp_path)
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    write_recording(elsewhere / "train/aaaaaaab/s001_2003/01_tcp_ar", "aaaaaaab_s001_t000")
    (tmp_path / "edf/eval").symlink_to(elsewhere / "train")  # all the EDFs behind a link: say so
    with pytest.raises(
        CorpusError,
        match=r"no \.edf files found under the corpus root \(not searched: edf/eval: "
        r"symbolic link to a folder: not followed\)$",
    ):
        discover.survey(tmp_path)
    write(tmp_path / "edf/train/bad name.edf")  # a problem is still an EDF found: the build decides
    assert [p.relpath for p in discover.survey(tmp_path).problems] == ["edf/train/bad name.edf"]


def unreadable_folder(parent: Path) -> str:
    """A chain of folders under ``parent`` whose deepest cannot be listed -> its path relative to ``parent``. Tests
    run as root, where modes do not stop reads; a path past PATH_MAX (4,096 bytes) does."""
    here = os.getcwd()
    os.chdir(parent)
    try:
        for _ in range(20):
            os.mkdir("d" * 250)
            os.chdir("d" * 250)
    finally:
        os.chdir(here)
    depth = next(n for n in range(1, 21) if len(str(parent / "/".join(["d" * 250] * n))) >= 4096)
    return "/".join(["d" * 250] * depth)


def test_a_folder_that_cannot_be_read_is_reported_with_its_reason(root):
    """A folder below the root is one folder's problem (the build decides: fail stops, skip records it)."""
    deep = unreadable_folder(root / "edf/train")
    found = discover.survey(root)
    assert [r.relpath for r in found.refs] == [GOOD] and found.problems == []
    assert [(p.relpath, p.error.reason) for p in found.unreadable] == [
        (f"edf/train/{deep}", "cannot read folder: File name too long")
    ]
    assert found.unreadable[0].error.path == str(root / "edf/train" / deep)


def test_config_default_is_the_discovery_default():
    assert DataConfig().prefer_montage_folders == discover.MONTAGE_PREFERENCE
