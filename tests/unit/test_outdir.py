"""The rules of eegcache.builder.ownership on their own: which relative paths and temp names are the build's, and the lock."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eegcache import locks
from eegcache.builder import ownership
from eegcache.core import store


@pytest.mark.parametrize("rel", ["train/a.npz", "model_weights.npz", "a/b/c"])
def test_safe_relative_paths(rel, tmp_path):
    assert ownership.inside(tmp_path, rel) == tmp_path / rel


@pytest.mark.parametrize(
    "rel",
    [
        "",
        "/etc/passwd",
        "../x",
        "train/../../x",
        "a//b",
        "./a",
        "a/.",
        "a/",
        "a\0b",
        "a\nb",
        "a\\..\\b",
        None,
        3,
        ["a"],
    ],
)
def test_unsafe_relative_paths(rel, tmp_path):
    assert ownership.inside(tmp_path, rel) is None


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab./\\\0\n~ -")), max_size=24))
def test_no_relative_path_leads_outside_the_root(rel):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp, "out")
        (root / "a").mkdir(parents=True)
        os.symlink(tmp, root / "b")  # a folder symlink leading out of the root
        path = ownership.inside(root, rel)
        assert path is None or path.resolve().is_relative_to(root.resolve())


@pytest.mark.parametrize(
    ("rel", "ours"),
    [
        (f"train/.x_s001_t000.npz{store.TMP_MARK}abcd_123", True),
        (f".{store.METADATA_NAME}{store.TMP_MARK}zzzzzzzz", True),
        (f".{store.JOURNAL_NAME}{store.TMP_MARK}00000000", True),
        (f"train/.x.npz{store.TMP_MARK}abc", False),  # not mkstemp's 8 characters
        (f"train/.x.npz{store.TMP_MARK}ABCDEFGH", False),
        (f"sub/.x.npz{store.TMP_MARK}abcdefgh", False),  # not a split folder
        (f"train/.notes.txt{store.TMP_MARK}abcdefgh", False),  # not an output
        (f".model.npz{store.TMP_MARK}abcdefgh", False),  # outputs are one folder down
        (f"train/x.npz{store.TMP_MARK}abcdefgh", False),  # no leading dot
    ],
)
def test_own_temp_files_are_exactly_atomic_writes(rel, ours):
    assert ownership.own_temp(rel) is ours


def test_atomic_write_temp_names_match(tmp_path, monkeypatch):
    seen = []
    real = tempfile.mkstemp
    monkeypatch.setattr(tempfile, "mkstemp", lambda **kw: seen.append(real(**kw)) or seen[-1])
    store.atomic_write(tmp_path / "train" / "x.npz", b"data")
    assert ownership.own_temp(Path(seen[0][1]).relative_to(tmp_path).as_posix())


def test_shared_holders_share_and_exclude_an_exclusive_one(tmp_path):
    lock = tmp_path / "x.lock"
    with locks.held(lock, shared=True), locks.held(lock, shared=True):
        with pytest.raises(locks.Busy, match=f"pid {os.getpid()} .*shared"):
            with locks.held(lock):
                pass
    with locks.held(lock), pytest.raises(locks.Busy, match="exclusive"), locks.held(lock, shared=True):
        pass
    assert lock.read_text().count("\n") == 1  # an exclusive holder starts the record afresh
