"""Training runs on the volume: the trainer ``train.entrypoint`` names, its run directory and what it returns."""

from __future__ import annotations

import json

import pytest

from eegcache import config
from eegcache.errors import ConfigError, TrainError
from eegcache.train import runs
from tests.conftest import REPO


def _config(entrypoint: str) -> config.Config:
    return config.load(REPO, [f"train.entrypoint=tests.fixtures.my_trainer:{entrypoint}"], local=False)


def test_numpy_metrics_are_written_as_json_numbers(tmp_path):
    result = runs.train(_config("numpy_metrics"), tmp_path / "cache", tmp_path / "run")
    assert result["metrics"] == {"auroc": 0.75, "windows": 3}
    assert json.loads((tmp_path / "run" / "result.json").read_text())["metrics"] == {"auroc": 0.75, "windows": 3}


@pytest.mark.parametrize(
    ("entrypoint", "message"),
    [
        ("no_metrics", "returned a NoneType"),
        ("text_metrics", "not a name and a finite number: 'auroc': 'high'"),
        ("nan_metrics", "not a name and a finite number: 'auroc': nan, 'loss': inf"),
        ("exits", r"called sys.exit\(0\) before returning its metrics"),
    ],
)
def test_a_trainer_returning_no_metrics_is_a_train_error_and_leaves_the_run_unfinished(tmp_path, entrypoint, message):
    with pytest.raises(TrainError, match=message) as caught:
        runs.train(_config(entrypoint), tmp_path / "cache", tmp_path / "run")
    assert f"my_trainer:{entrypoint}" in str(caught.value)
    assert (tmp_path / "run" / "run.json").exists() and not (tmp_path / "run" / "result.json").exists()


@pytest.mark.parametrize("entrypoint", ["os:system", "json:dumps", "shutil:copy"])
def test_an_entrypoint_that_does_not_take_the_trainers_keywords_is_a_config_error_before_it_runs(entrypoint):
    with pytest.raises(ConfigError, match="does not take the trainer's keywords cache_dir, config"):
        runs.load_trainer(entrypoint)


def test_the_baseline_and_the_test_trainer_take_the_trainers_keywords():
    assert runs.load_trainer("eegcache.train:baseline") and runs.load_trainer("tests.fixtures.my_trainer:fit")


def test_a_finished_run_is_never_written_again_but_a_retry_of_its_own_call_gets_its_result(tmp_path):
    """A call that finished (result.json written) and was preempted before it returned is retried by Modal under the
    same input id: it gets the recorded result. Any other call (another id, or none) is refused."""
    cfg, where = _config("numpy_metrics"), tmp_path / "run"
    first = runs.train(cfg, tmp_path / "cache", where, call="in-01first")
    written = {p.name: p.read_bytes() for p in where.iterdir() if p.is_file()}
    assert runs.train(cfg, tmp_path / "cache", where, call="in-01first") == first
    for other in ("in-02other", ""):
        with pytest.raises(TrainError, match="finished already"):
            runs.train(cfg, tmp_path / "cache", where, call=other)
    assert {p.name: p.read_bytes() for p in where.iterdir() if p.is_file()} == written


def test_the_baseline_has_one_run_hash_under_its_old_and_new_names():
    """``eegcache.train:baseline`` (before train/ was a package) names the same trainer: one config hash, one run
    directory, so a run started under the old name resumes under the new one."""
    old = config.load(REPO, ["train.entrypoint=eegcache.train:baseline"], local=False)
    new = config.load(REPO, ["train.entrypoint=eegcache.train.baseline:baseline"], local=False)
    other = config.load(REPO, ["train.entrypoint=tests.fixtures.my_trainer:fit"], local=False)
    assert runs.config_hash(old) == runs.config_hash(new) != runs.config_hash(other)


def test_a_run_id_trains_in_one_process_at_a_time(tmp_path):
    """Two calls with the same run id: the second is refused while the first trains, nothing of it written."""
    from eegcache import locks

    where = tmp_path / "run-1"
    where.mkdir()
    with locks.held(where / runs.RUN_LOCK):  # another process training in it (flock: per open file, so here too)
        with pytest.raises(TrainError, match="run run-1 is running already .*pid"):
            runs.train(_config("numpy_metrics"), tmp_path, where)
    assert not (where / "run.json").exists() and not (where / "result.json").exists()
    assert runs.train(_config("numpy_metrics"), tmp_path, where)["metrics"] == {"auroc": 0.75, "windows": 3}
