"""The Modal deployment's settings and its cost report (estimates from the configured prices)."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from eegcache import cli, config
from eegcache.errors import ConfigError
from eegcache.modal_settings import ModalConfig, Spent, cost_lines, modal_settings
from tests.conftest import REPO

PRICES = ModalConfig(gpu_usd_per_hour=2.5, cpu_usd_per_core_hour=0.05, memory_usd_per_gib_hour=0.01)


def test_a_container_costs_its_seconds_at_the_hourly_prices_of_what_it_reserved():
    cpu_only = Spent("prepare", 1800.0, 2.0, 4096, None)  # half an hour, 2 cores, 4 GiB
    assert cpu_only.usd(PRICES) == pytest.approx(0.5 * (2 * 0.05 + 4 * 0.01))
    gpu = Spent("train", 3600.0, 8.0, 65536, "A100-80GB")
    assert gpu.usd(PRICES) == pytest.approx(2.5 + 8 * 0.05 + 64 * 0.01)


def test_the_report_has_a_line_per_container_and_the_estimated_total():
    spent = [Spent("prepare", 60.0, 2.0, 4096, None), Spent("train", 120.0, 8.0, 65536, "A100-80GB")]
    lines = cost_lines(spent, PRICES)
    assert len(lines) == 3 and lines[0].startswith("prepare") and "A100-80GB" in lines[1]
    total = sum(s.usd(PRICES) for s in spent)
    assert lines[2].startswith("total") and f"~${total:.4f}" in lines[2] and "estimated" in lines[2]


def test_the_configured_prices_are_the_modal_groups_and_labelled_estimates():
    settings = modal_settings(config.load(REPO, ["paths=modal"], local=False))
    assert (settings.gpu_usd_per_hour, settings.cpu_usd_per_core_hour) == (2.50, 0.0473)
    text = (REPO / "conf" / "modal" / "default.yaml").read_text()
    assert "ESTIMATES" in text and "modal.com/pricing" in text


def test_the_gpu_has_one_price_the_cache_groups_that_the_cost_report_and_resolves_savings_share():
    settings = config.load(REPO, ["paths=modal", "cache.gpu_price_per_hour=4.0"], local=False)
    assert modal_settings(settings).gpu_usd_per_hour == settings.cache.gpu_price_per_hour == 4.0


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"build_cache_timeout_s": 3600, "build_timeout_s": 3600}, "waits for the shards"),
        ({"train_timeout_s": 25 * 3600}, "Modal's limit"),
        ({"verify_timeout_s": 0}, "Modal's limit"),
        ({"retries": 11}, "retries"),
        ({"raw_prefix": "tusz"}, "must end with '/'"),
        ({"build_memory_mib": 0}, "must be positive"),
        ({"train_cpu": 0.0}, "must be positive"),
        ({"prepare_cpu": -1.0}, "must be positive"),
        ({"build_containers": True}, "must be positive"),
        ({"gpu": ""}, "would run on no GPU"),
        ({"gpu": "  "}, "would run on no GPU"),
    ],
)
def test_settings_modal_would_refuse_are_config_errors(fields, message):
    with pytest.raises(ConfigError, match=message):
        dataclasses.replace(ModalConfig(), **fields)


def test_the_modal_group_is_typed_where_it_is_read():
    """The configuration road keeps ``modal`` as a mapping; typing it refuses unknown keys and wrong types."""
    with pytest.raises(ConfigError, match="unknown key"):
        modal_settings(config.load(REPO, ["paths=modal", "+modal.gpux=H100"], local=False))
    with pytest.raises(ConfigError, match="modal.retries"):
        modal_settings(config.load(REPO, ["paths=modal", "modal.retries=many"], local=False))


def test_a_refused_modal_setting_names_its_conf_and_eegcache_params_writes_nothing(tmp_path, capsys):
    """The Modal app names the conf/ its settings came from; ``eegcache params`` checks them before params.yaml is
    written, so the tracked params never hold settings the app refuses."""
    project = tmp_path / "project"
    mine = lambda folder, names: ["default.yaml"] if Path(folder).name == "local" else []  # noqa: E731
    shutil.copytree(REPO / "conf", project / "conf", ignore=mine)  # never this machine's conf/local
    with pytest.raises(ConfigError, match="modal.retries") as caught:
        modal_settings(config.load(project, ["modal.retries=99"], local=False), project / "conf")
    assert caught.value.path == str(project / "conf")
    assert cli.main(["params", "modal.retries=99", "--repo", str(project)]) == 2
    assert "modal.retries" in capsys.readouterr().err and not (project / "params.yaml").exists()
    assert cli.main(["params", "--repo", str(project)]) == 0 and (project / "params.yaml").is_file()


def test_the_launch_settings_name_the_variable_they_came_from(tmp_path):
    from eegcache.modal_settings import launch_settings

    with pytest.raises(ConfigError, match="EEGCACHE_MODAL_SETTINGS is not JSON"):
        launch_settings(REPO, [], {"EEGCACHE_MODAL_SETTINGS": "{bad"})
    with pytest.raises(ConfigError) as caught:
        launch_settings(REPO, [], {"EEGCACHE_MODAL": "modal.nokey=1"})
    assert "EEGCACHE_MODAL" in str(caught.value)
