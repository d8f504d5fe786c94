from pathlib import Path

import pytest
import yaml

from eegcache import config
from eegcache.core.identity import stable_hash
from eegcache.errors import ConfigError
from eegcache.versions import identity, lockfile

REPO = Path(__file__).resolve().parents[2]


def test_committed_params_yaml_is_the_composition_of_conf():
    composed = config.compose(REPO)
    committed = yaml.safe_load((REPO / "params.yaml").read_text())
    assert committed == composed, "params.yaml drifted from conf/: run `eegcache params`"


def test_composition_converts_into_frozen_dataclasses():
    cfg = config.load(REPO)
    assert cfg.preprocess.montage == "ref19" and cfg.preprocess.dtype == "float16"
    with pytest.raises(AttributeError):
        cfg.preprocess.dtype = "float32"  # type: ignore[misc]


def test_group_selection_and_values_on_the_one_road():
    cfg = config.load(REPO, ["preprocess=tcp22", "build.workers=2", "preprocess.dtype=float32", "data.dev_ratio=0.25"])
    assert (cfg.preprocess.montage, cfg.preprocess.dtype, cfg.build.workers, cfg.data.dev_ratio) == (
        "tcp22",
        "float32",
        2,
        0.25,
    )


def test_write_params_writes_what_load_reads_back(tmp_path):
    params = tmp_path / "params.yaml"
    cfg = config.write_params(REPO, ["preprocess=tcp22", "build.workers=2"], params)
    assert cfg.preprocess.montage == "tcp22" and cfg.build.workers == 2
    assert yaml.safe_load(params.read_text())["preprocess"]["montage"] == "tcp22"
    assert config.load(REPO, params_file=params) == cfg


def test_paths_live_in_one_group_and_the_modal_paths_are_selected():
    local, modal = config.load(REPO, local=False), config.load(REPO, ["paths=modal", "data=tusz"], local=False)
    assert (local.data.raw_dir, local.build.out_dir, local.cache.volume_root) == (
        "data/tusz_demo",
        "cache/tusz",
        ".eegcache/volume",
    )
    assert (modal.data.raw_dir, modal.cache.volume_root, modal.cache.mount_point) == (
        "/data/tusz",
        "/results",
        "/s3-cache",
    )
    moved = config.load(REPO, ["data=tusz", "paths.data_dir=/mnt/eeg", "paths.cache_dir=/fast/cache"], local=False)
    assert (moved.data.raw_dir, moved.build.out_dir) == ("/mnt/eeg/tusz", "/fast/cache")
    demo = config.load(REPO, ["paths.data_dir=/mnt/eeg"], local=False)
    assert demo.data.raw_dir == "data/tusz_demo"  # the demo corpus lives in the project (`make demo` writes it)


def test_a_local_config_is_composed_last_by_commands_and_never_into_params_yaml(tmp_path):
    import shutil

    shutil.copytree(REPO / "conf", tmp_path / "conf", ignore=shutil.ignore_patterns("local"))  # no machine's own
    assert config.load(tmp_path).build.workers == 0  # optional: absent is fine
    (tmp_path / "conf" / "local").mkdir()
    shutil.copy(REPO / "conf" / "local" / "example.yaml", tmp_path / "conf" / "local" / "default.yaml")
    cfg = config.load(tmp_path, ["data=tusz"])
    assert (cfg.build.workers, cfg.data.raw_dir) == (8, "/mnt/eeg/tusz")
    assert config.load(tmp_path, local=False).build.workers == 0  # the Modal app's composition
    config.write_params(tmp_path)
    assert yaml.safe_load((tmp_path / "params.yaml").read_text()) == config.compose(REPO)  # the same on every machine


def test_params_file_refuses_more_overrides(tmp_path):
    params = tmp_path / "params.yaml"
    config.write_params(REPO, [], params)
    with pytest.raises(ConfigError, match="eegcache params <overrides>"):
        config.load(REPO, ["preprocess.dtype=float32"], params_file=params)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("build.wrkers=2", "build.wrkers"),
        ("+data.extra=1", "unknown key(s) data.extra"),
        ("build.workers=two", "build.workers = 'two': expected int"),
        ("build.progress=3", "build.progress = 3: expected bool"),
        ("preprocess.montage=bipolar", "preprocess.montage = 'bipolar'; expected one of ref19, tcp22"),
        ("preprocess=bipolar", "preprocess"),
        ("preprocess.bandpass_high=120", "Nyquist"),
        ("data.split_policy=random", "data.split_policy = 'random'"),
        ("data.dev_ratio=1.5", "data.dev_ratio = 1.5"),
        ("build.on_error=ignore", "build.on_error = 'ignore'"),
    ],
)
def test_bad_values_give_clear_errors(override, message):
    with pytest.raises(ConfigError) as err:
        config.load(REPO, [override])
    assert message in str(err.value) and str(REPO / "conf") in str(err.value)


def test_missing_params_file_says_how_to_make_it(tmp_path):
    with pytest.raises(ConfigError, match="eegcache params"):
        config.load(REPO, params_file=tmp_path / "params.yaml")


def test_not_a_project_is_named(tmp_path):
    with pytest.raises(ConfigError, match="not an eegcache project"):
        config.load(tmp_path)


def test_requested_names_what_the_overrides_ask_for():
    assert identity.requested(REPO, []) == {}
    assert identity.requested(REPO, ["cache.jobs=4", "train.epochs=3", "paths=modal"]) == {}
    assert identity.requested(REPO, ["preprocess.dtype=float32"]) == {"preprocess.dtype": "float32"}
    # naming a key asks for it even when the value is the default
    assert identity.requested(REPO, ["preprocess.dtype=float16"]) == {"preprocess.dtype": "float16"}
    group = identity.requested(REPO, ["preprocess=tcp22"])
    assert group["preprocess.montage"] == "tcp22" and group["preprocess.sample_rate"] == 200 and len(group) == 10


def test_conflicts_name_each_key_with_both_values():
    recorded = {"preprocess.dtype": "float32", "preprocess.clip": 10.0, "data.split_policy": "official_tusz"}
    asked = {"preprocess.dtype": "float16", "preprocess.clip": 10, "data.split_policy": "patient_disjoint"}
    assert identity.conflicts(recorded, asked) == [
        "data.split_policy: version official_tusz, config patient_disjoint",
        "preprocess.dtype: version float32, config float16",
    ]


def test_stage_params_are_what_dvc_yaml_lists_for_the_stage():
    listed = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["build_cache"]["params"]
    flat = lockfile.flatten(identity.stage_params(config.load(REPO)))
    assert sorted(listed) == sorted({key if key.startswith(("data.", "build.")) else key.split(".")[0] for key in flat})


def test_stable_hash_ignores_key_order():
    assert stable_hash({"a": 1, "b": [1, 2]}) == stable_hash({"b": [1, 2], "a": 1})
    assert stable_hash({"a": 1}) != stable_hash({"a": 1.5})
