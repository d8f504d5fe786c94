"""The baseline trained on a cache built from the demo corpus: it learns, its files are sane and reproducible."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from eegcache import config
from eegcache.builder.run import run_build
from eegcache.train.baseline import run_train
from eegcache.train.dataset import WindowDataset
from tests.conftest import REPO, make_config

pytestmark = pytest.mark.integration
METRICS = (
    "windows",
    "seizure_windows",
    "hours",
    "auroc",
    "sensitivity",
    "specificity",
    "false_alarms",
    "false_alarms_per_24h",
    "events",  # eegcache.train.events, the same alarms scored as events
    "event_true_positives",
    "event_false_alarms",
    "event_hours",
    "event_sensitivity",
    "event_precision",
    "event_f1",
    "event_false_alarms_per_24h",
)


def with_outputs(cfg: config.Config, out: Path) -> config.Config:
    files = {"metrics_file": "metrics.json", "roc_file": "roc.json", "model_file": "model.json"}
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **{k: str(out / v) for k, v in files.items()}))


@pytest.fixture(scope="module")
def demo_cache(base_config, demo_corpus, tmp_path_factory) -> config.Config:
    """The demo corpus built into a cache; the returned config points at it with the default train section."""
    cfg = make_config(base_config, demo_corpus, tmp_path_factory.mktemp("train_cache"))
    run_build(cfg)
    return cfg


@pytest.fixture(scope="module")
def trained(demo_cache, tmp_path_factory):
    cfg = with_outputs(demo_cache, tmp_path_factory.mktemp("trained"))
    return cfg, run_train(cfg)


def test_the_baseline_learns_on_the_demo_corpus(trained):
    cfg, result = trained
    m = result.metrics
    # measured: dev AUROC 0.97, sensitivity 0.92 (13 seizure windows of 64); chance is 0.5
    assert m["dev_auroc"] >= 0.9, m
    assert m["dev_sensitivity"] >= 0.7, m
    assert m["train_auroc"] >= 0.95, m


def test_metrics_file_is_flat_and_consistent(trained):
    cfg, result = trained
    m = json.loads(result.metrics_file.read_text())
    assert m == result.metrics
    assert set(m) == {"threshold"} | {f"{split}_{name}" for split in ("train", "dev") for name in METRICS}
    for split in ("train", "dev"):
        ds = WindowDataset(cfg.build.out_dir, split, window_s=cfg.train.window_s, stride_s=cfg.train.stride_s)
        assert m[f"{split}_windows"] == len(ds)
        assert m[f"{split}_seizure_windows"] == int(np.count_nonzero(ds.seizure_fraction >= 0.5)) > 0
        assert m[f"{split}_hours"] == pytest.approx(len(ds) * cfg.train.stride_s / 3600, abs=1e-6)
        assert 0 <= m[f"{split}_false_alarms"] <= len(ds) - m[f"{split}_seizure_windows"]
        assert m[f"{split}_false_alarms_per_24h"] == pytest.approx(
            m[f"{split}_false_alarms"] / (len(ds) * cfg.train.stride_s) * 86400, abs=1e-5
        )
        assert all(0 <= m[f"{split}_{k}"] <= 1 for k in ("auroc", "sensitivity", "specificity"))
    assert m["threshold"] == cfg.train.threshold


def test_roc_runs_monotonically_from_origin_to_corner_and_matches_the_auroc(trained):
    _, result = trained
    points = json.loads(result.roc_file.read_text())
    fpr, tpr = np.array([p["fpr"] for p in points]), np.array([p["tpr"] for p in points])
    assert set(points[0]) == {"fpr", "tpr"}
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    area = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))  # every point kept: 64 dev windows
    assert area == pytest.approx(result.metrics["dev_auroc"], abs=1e-5)


def test_model_file_describes_its_features(trained):
    cfg, result = trained
    model = json.loads(result.model_file.read_text())
    features = len(model["channels"]) * (len(cfg.train.band_edges) + 1)
    assert len(model["channels"]) == 19 and len(model["features"]) == features
    assert all(len(model[k]) == features for k in ("mean", "scale", "weights"))
    assert model["features"][:2] == ["FP1 1-4 Hz", "FP1 4-8 Hz"] and model["sample_rate"] == 200.0


def test_same_seed_gives_identical_files_another_seed_other_weights(trained, tmp_path):
    cfg, first = trained
    again = run_train(with_outputs(cfg, tmp_path / "again"))
    for a, b in zip(
        (first.metrics_file, first.roc_file, first.model_file), (again.metrics_file, again.roc_file, again.model_file)
    ):
        assert a.read_bytes() == b.read_bytes(), a.name
    other = with_outputs(cfg, tmp_path / "other")
    other = run_train(dataclasses.replace(other, train=dataclasses.replace(other.train, seed=1)))
    assert json.loads(other.model_file.read_text())["weights"] != json.loads(first.model_file.read_text())["weights"]


def test_cli_trains_with_overrides_and_reports_errors(demo_cache, tmp_path):
    shutil.copytree(REPO / "conf", tmp_path / "conf", ignore=shutil.ignore_patterns("local"))
    cmd = [
        sys.executable,
        "-m",
        "eegcache.cli",
        "train",
        f"build.out_dir={Path(demo_cache.build.out_dir)}",
        f"train.metrics_file={tmp_path / 'm.json'}",
        f"train.roc_file={tmp_path / 'roc.json'}",
        f"train.model_file={tmp_path / 'model.json'}",
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    m = json.loads((tmp_path / "m.json").read_text())
    assert f"dev: AUROC {m['dev_auroc']:.3f}, sensitivity {m['dev_sensitivity']:.3f}" in proc.stdout
    assert "false alarms per 24 h at threshold 0.5" in proc.stdout

    proc = subprocess.run([*cmd, "train.window_s=600"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert (
        "eegcache train: error:" in proc.stderr
        and ".cache_metadata.json: split 'train' has no 600 s windows" in proc.stderr
    )
