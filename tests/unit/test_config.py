from pathlib import Path

import pytest
import yaml

from eegcache import config
from eegcache.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_committed_params_yaml_is_the_composition_of_conf():
    composed = config.compose(REPO / "conf")
    committed = yaml.safe_load((REPO / "params.yaml").read_text())
    assert committed == composed, "params.yaml drifted from conf/: run `eegcache params`"


def test_composition_validates_into_frozen_dataclasses():
    cfg = config.validate(config.compose(REPO / "conf"), "conf")
    assert cfg.preprocess.montage == "ref19" and cfg.preprocess.dtype == "float16"
    with pytest.raises(AttributeError):
        cfg.preprocess.dtype = "float32"  # type: ignore[misc]


def test_group_override_selects_tcp22(tmp_path):
    params = tmp_path / "params.yaml"
    cfg = config.write_params(REPO / "conf", params, ["preprocess=tcp22", "build.workers=2"])
    assert cfg.preprocess.montage == "tcp22" and cfg.build.workers == 2
    assert yaml.safe_load(params.read_text())["preprocess"]["montage"] == "tcp22"


@pytest.fixture
def params(tmp_path):
    path = tmp_path / "params.yaml"
    config.write_params(REPO / "conf", path)
    return path


def test_value_overrides_on_params_yaml(params):
    cfg = config.load(params, ["preprocess.dtype=float32", "data.raw_dir=/elsewhere", "data.dev_ratio=0.25"])
    assert (cfg.preprocess.dtype, cfg.data.raw_dir, cfg.data.dev_ratio) == ("float32", "/elsewhere", 0.25)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("build.wrkers=2", "unknown key 'build.wrkers'"),
        ("+data.extra=1", "unknown key(s) data.extra"),
        ("build.workers=two", "build.workers = 'two': expected int"),
        ("build.progress=3", "build.progress = 3: expected bool"),
        ("preprocess.montage=bipolar", "preprocess.montage = 'bipolar'; expected one of ref19, tcp22"),
        ("preprocess.bandpass_high=120", "Nyquist"),
        ("data.split_policy=random", "data.split_policy = 'random'"),
        ("data.dev_ratio=1.5", "data.dev_ratio = 1.5"),
        ("build.on_error=ignore", "build.on_error = 'ignore'"),
    ],
)
def test_bad_values_give_clear_errors(params, override, message):
    with pytest.raises(ConfigError) as err:
        config.load(params, [override])
    assert message in str(err.value) and str(params) in str(err.value)


def test_missing_params_file_says_how_to_make_it(tmp_path):
    with pytest.raises(ConfigError, match="eegcache params"):
        config.load(tmp_path / "params.yaml")


def test_stable_hash_ignores_key_order():
    assert config.stable_hash({"a": 1, "b": [1, 2]}) == config.stable_hash({"b": [1, 2], "a": 1})
    assert config.stable_hash({"a": 1}) != config.stable_hash({"a": 1.5})
