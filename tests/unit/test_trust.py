"""The gate for untrusted names: any string either passes as what it must be or is refused; what passes never leads
outside its root (``..``, absolute paths, symlinks), whatever the input."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eegcache import trust
from eegcache.versions import objects

HOSTILE = st.one_of(
    st.text(max_size=60),
    st.lists(
        st.sampled_from(["..", ".", "", "a", "b.npz", "/", "\\", "\x00", "\n", "~", "-x", "%2e%2e"]), max_size=8
    ).map("/".join),
    st.sampled_from(
        ["../../../../tmp/victim.txt", "/etc/passwd", "a/../../b", "train/../..", "./a", "a//b", "a/", " "]
    ),
)


@settings(max_examples=500, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=HOSTILE)
def test_any_string_is_an_object_id_or_refused(text):
    try:
        oid = trust.object_id(text)
    except trust.UnsafeName as exc:
        assert repr(text) in str(exc)
        return
    assert re.fullmatch(r"[0-9a-f]{32}(\.dir)?", oid)


@settings(max_examples=500, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=HOSTILE)
def test_any_string_joined_under_a_root_stays_under_it_or_is_refused(tmp_path, text):
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    try:
        path = trust.inside(root, text)
    except trust.UnsafeName:
        return
    assert path.resolve().is_relative_to(root.resolve())
    assert ".." not in Path(trust.relpath(text)).parts


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=HOSTILE)
def test_object_paths_in_a_dvc_cache_stay_in_it_or_are_refused(tmp_path, text):
    try:
        path = objects.cache_path(tmp_path, text)
    except trust.UnsafeName:
        return
    assert path.resolve().is_relative_to(tmp_path.resolve()) and path.parent.parent.parent == tmp_path / "files"


@settings(max_examples=300)
@given(text=HOSTILE | st.text(min_size=1, max_size=20).map(lambda t: "-" + t))
def test_a_revision_is_never_an_option(text):
    try:
        rev = trust.revision(text)
    except trust.UnsafeName:
        return
    assert not rev.startswith("-") and rev.strip() == rev and "\n" not in rev


def test_a_symlink_out_of_the_root_is_refused(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    os.symlink(outside, root / "link")
    with pytest.raises(trust.UnsafeName, match="leads outside"):
        trust.inside(root, "link/x.npz")
    assert trust.inside(root, "train/x.npz") == root / "train" / "x.npz"


def _listing(entries: list[dict]) -> tuple[bytes, str]:
    data = json.dumps(entries).encode()
    return data, hashlib.md5(data).hexdigest() + ".dir"


def test_a_listing_is_checked_against_its_name_and_every_entry_through_the_gate():
    good, name = _listing([{"md5": "a" * 32, "relpath": "train/x.npz"}])
    assert objects.parse_listing(good, name) == {"train/x.npz": "a" * 32}
    with pytest.raises(objects.ObjectError, match="corrupt or replaced"):
        objects.parse_listing(good + b" ", name)
    for bad in (
        {"md5": "a" * 32, "relpath": "../../../x.txt"},
        {"md5": "../../victim", "relpath": "x.npz"},
        {"md5": "a" * 32, "relpath": "/etc/passwd"},
    ):
        data, name = _listing([bad])
        with pytest.raises(trust.UnsafeName):
            objects.parse_listing(data, name)
    data, name = _listing([{"md5": "a" * 32, "relpath": "x"}, {"md5": "b" * 32, "relpath": "x"}])
    with pytest.raises(objects.ObjectError, match="twice"):
        objects.parse_listing(data, name)
