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


SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@pytest.fixture
def project(tmp_path, monkeypatch):
    import shutil

    from tests.conftest import REPO

    root = tmp_path / "project"
    shutil.copytree(
        REPO / "conf", root / "conf", ignore=lambda d, n: ["default.yaml"] if Path(d).name == "local" else []
    )
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    return root


@pytest.mark.parametrize(
    "override",
    [
        "cache.rev=${oc.env:AWS_SECRET_ACCESS_KEY}",
        "cache.mount_point=/s3/${oc.env:AWS_SECRET_ACCESS_KEY}",
        "train.args.token=${oc.env:HOME}",  # any interpolation, not only of a secret
        "cache.version=${now:%Y}",
    ],
)
def test_an_interpolation_on_the_command_line_is_refused_and_nothing_is_written(project, capsys, override):
    from eegcache import cli

    assert cli.main(["params", override, "--repo", str(project)]) == 2
    err = capsys.readouterr().err
    assert "is a literal; interpolations (${...}) belong in conf/ files" in err and override.split("=")[0] in err
    assert SECRET not in err and not (project / "params.yaml").exists()


def test_a_secret_of_the_environment_in_any_value_is_refused_naming_the_key_never_the_value(project, capsys):
    from eegcache import cli, config
    from eegcache.errors import ConfigError

    for override in (f"cache.mount_point=/mnt/{SECRET}", f"train.args.keys=[a,{SECRET}]"):
        assert cli.main(["params", override, "--repo", str(project)]) == 2
        err = capsys.readouterr().err
        assert "would hold the value of a secret of the environment" in err and SECRET not in err
    common = project / "conf" / "cache" / "common.yaml"
    common.write_text(re.sub(r"(?m)^rev:.*$", "rev: ${oc.env:AWS_SECRET_ACCESS_KEY}", common.read_text()))
    # in a conf/ file an interpolation is allowed; a secret in the composition is not
    with pytest.raises(ConfigError, match=r"cache\.rev would hold") as caught:
        config.load(project)
    assert SECRET not in str(caught.value)


def test_redact_replaces_every_secret_value_and_leaves_short_ones_alone():
    env = {"AWS_SECRET_ACCESS_KEY": SECRET, "AWS_SESSION_TOKEN": "s"}
    assert trust.redact(f"a {SECRET} b {SECRET}", env) == "a <$AWS_SECRET_ACCESS_KEY> b <$AWS_SECRET_ACCESS_KEY>"
    assert trust.redact("s3 says s", env) == "s3 says s"  # "s" is too short to be told from text
    assert trust.secret_keys({"a": {"b": [1, f"x{SECRET}"]}, "c": "plain"}, env) == ["a.b.1"]


DEEP_JSON = "[" * 100_000 + "]" * 100_000
DEEP_YAML = "a:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(200)) + "  " * 201 + "v: 1\n"


@pytest.mark.parametrize("text", [DEEP_JSON, '{"a": ' * 65 + "1" + "}" * 65])
def test_json_from_outside_is_bounded_in_depth(text):
    with pytest.raises(ValueError, match="nested more than 64 deep"):
        trust.loads_json(text)
    assert trust.loads_json('{"a": ' * 63 + "1" + "}" * 63)  # 63 deep: eegcache's own go 5


def test_json_and_yaml_from_outside_are_bounded_in_size():
    with pytest.raises(ValueError, match="more than the 1,000 eegcache reads"):
        trust.loads_json(b" " * 1001, max_bytes=1000)
    with pytest.raises(ValueError, match="more than the 1,000 eegcache reads"):
        trust.loads_yaml("a: 1\n" * 300, max_bytes=1000)
    with pytest.raises(ValueError, match="nested more than 64 deep"):
        trust.loads_yaml(DEEP_YAML)
    with pytest.raises(ValueError, match="not valid YAML"):
        trust.loads_yaml("a: [1,")


def test_every_document_eegcache_parses_is_one_clear_error_when_nested_too_deep(tmp_path):
    from eegcache import config
    from eegcache.errors import ConfigError
    from eegcache.versions import lockfile

    (tmp_path / "params.yaml").write_text(DEEP_YAML)
    with pytest.raises(ConfigError, match="nested more than 64 deep"):
        config.load(tmp_path, params_file=tmp_path / "params.yaml")
    with pytest.raises(lockfile.LockfileError):
        lockfile.parse(DEEP_YAML, None, "dvc.lock")
    deep = DEEP_JSON.encode()
    with pytest.raises(objects.ObjectError, match="nested more than 64 deep"):
        objects.parse_listing(deep, hashlib.md5(deep).hexdigest() + ".dir", "listing")


def test_every_number_of_the_schemas_has_a_range_and_it_is_checked():
    import dataclasses

    from eegcache import config
    from eegcache.errors import ConfigError
    from eegcache.modal_settings import ModalConfig
    from tests.conftest import REPO

    for cls in (*config._SECTIONS.values(), ModalConfig):
        numbers = {f.name for f in dataclasses.fields(cls) if f.type in ("int", "float")}
        assert numbers <= set(getattr(cls, "RANGES", {})), cls.__name__
    for override, message in [
        ("cache.jobs=100000000", "cache.jobs = 100000000: expected a finite number, 0 to 256"),
        ("build.workers=5000", "0 to 1024"),
        ("train.epochs=1e9", "expected int"),
        ("train.learning_rate=nan", "train.learning_rate = nan: expected a finite number, 0 to 1000"),
        ("train.seed=-1", "expected a finite number, 0 to 4.29497e+09"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            config.load(REPO, [override], local=False)


def test_a_cache_metadata_nested_too_deep_is_one_line_not_a_traceback(tmp_path, capsys):
    from eegcache import cli

    (tmp_path / ".cache_metadata.json").write_text(DEEP_JSON)
    assert cli.main(["verify", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "nested too deep" in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_names_are_printed_literally_never_as_rich_markup(capsys):
    from rich.table import Table

    from eegcache.summary import print_summary

    table = Table()
    table.add_column("file")
    table.add_row("rec[bold]_s001_t000.edf")
    print_summary(table, ["skipped rec[bold]_s001_t000.edf: [red]bad[/red] :smile:"])
    out = capsys.readouterr().out
    assert out.count("rec[bold]_s001_t000.edf") == 2 and "[red]bad[/red] :smile:" in out


def test_folders_below_a_root_are_real_folders_of_ours_and_never_wider_than_0755(tmp_path):
    old = os.umask(0)
    try:
        made = trust.folders_below(tmp_path / "new root", "runs/v1/h2", "checkpoint", mode=0o777)
    finally:
        os.umask(old)
    assert made == tmp_path / "new root" / "runs" / "v1" / "h2" / "checkpoint" and made.is_dir()
    for folder in (made, made.parent, tmp_path / "new root" / "runs"):
        assert oct(folder.stat().st_mode & 0o777) == "0o755"  # umask 0 and mode 0o777 asked: never wider
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "new root" / "runs" / "v2")
    (tmp_path / "new root" / "runs" / "file").write_text("x")
    with pytest.raises(trust.UnsafeName, match="v2 is a symbolic link"):
        trust.folders_below(tmp_path / "new root", "runs", "v2", "h")
    with pytest.raises(trust.UnsafeName, match="file is not a folder"):
        trust.folders_below(tmp_path / "new root", "runs/file/h")
    with pytest.raises(trust.UnsafeName):
        trust.folders_below(tmp_path / "new root", "runs/../../escape")
    assert list((tmp_path / "elsewhere").iterdir()) == [] and not (tmp_path / "escape").exists()
