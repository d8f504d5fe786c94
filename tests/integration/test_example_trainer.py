"""examples/shallow_trainer, a real braindecode trainer with real torch, through the README's commands: `eegcache train
train=shallow` and the Modal body offline, a checkpoint and an exact resume after a preemption."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch

from eegcache.versions import dvc
from tests.conftest import REPO
from tests.integration.projects import make_project, sh
from tests.integration.test_modal_app import container, load_app
from tests.integration.test_own_corpus import readme_block

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:The .* function is executing locally:UserWarning"),
]
EXAMPLES = REPO / "examples"
SMALL = ("train.args.windows_per_epoch=128", "train.args.checkpoint_every=2")  # 2 batches of 64 per epoch


@pytest.fixture(scope="module")
def project(tmp_path_factory, demo_corpus, s3_server) -> Path:
    return make_project(tmp_path_factory.mktemp("example_trainer"), demo_corpus, s3_server, push=True)


def train(project: Path, *overrides: str, env: dict | None = None, check: bool = True):
    command = [sys.executable, "-m", "eegcache.cli", "train", "train=shallow", *SMALL, *overrides]
    return sh(*command, cwd=project, env={"PYTHONPATH": str(EXAMPLES), **(env or {})}, check=check)


def weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "model.pt", weights_only=True)


def test_the_readme_commands_run_the_example_on_the_workspaces_cache_and_on_a_version(project):
    """The README's block verbatim but its first line (`pip install -e '.[torch]'`: this venv has the extra)."""
    block = readme_block("## Your own trainer: locally, then on Modal").splitlines()
    assert block[0].startswith("pip install -e '.[torch]'") and block[1].startswith("export PYTHONPATH=examples ")
    script = "\n".join([f"export PYTHONPATH={EXAMPLES}", *block[2:]])
    proc = sh("bash", "-euo", "pipefail", "-c", script, cwd=project)
    ran = [project / ln[5:].split(" (cache ")[0] for ln in proc.stdout.splitlines() if ln.startswith("run: ")]
    assert len(ran) == 2  # the workspace's cache, then version cache-v1 resolved onto the volume root
    for run in ran:
        metrics = json.loads((run / "result.json").read_text())["metrics"]
        assert {"dev_auroc", "dev_sensitivity", "dev_false_alarms_per_24h", "dev_windows"} <= set(metrics)
        assert {"dev_event_sensitivity", "dev_event_precision", "dev_event_f1"} <= set(metrics)
        assert 0.0 <= metrics["dev_auroc"] <= 1.0 and metrics["dev_windows"] > 0
        assert f"dev: AUROC {metrics['dev_auroc']:.3f}" in proc.stdout
        assert set(weights(run)) and (run / "checkpoint" / "last.pt").is_file()
    assert json.loads((ran[0] / "run.json").read_text())["config"]["train"]["args"]["epochs"] == 1
    assert ran[0].parents[1].name == ran[1].parents[1].name == dvc.version_at(project).hash.removesuffix(".dir")


def test_a_preempted_run_resumes_from_its_checkpoint_to_the_same_weights(project):
    four = "train.args.windows_per_epoch=256"  # 4 batches an epoch: the checkpoint after batch 2 is mid-epoch
    whole = train(project, four, "--run-id", "whole")
    assert "run: " in whole.stdout
    stopped = train(project, four, "--run-id", "resumed", env={"SHALLOW_STOP_AFTER_BATCHES": "3"}, check=False)
    assert stopped.returncode != 0 and "Preempted: stopped after 3 batches" in stopped.stderr
    runs = {p.name: p for p in (project / ".eegcache" / "volume" / "runs").glob("*/*/*")}
    state = torch.load(runs["resumed"] / "checkpoint" / "last.pt", weights_only=False)
    assert (state["epoch"], state["batches"]) == (0, 2)  # batch 3 is trained again, then the rest
    assert not (runs["resumed"] / "result.json").exists()
    train(project, four, "--run-id", "resumed")
    a, b = weights(runs["whole"]), weights(runs["resumed"])
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (
        json.loads((runs["whole"] / "result.json").read_text())["metrics"]
        == json.loads((runs["resumed"] / "result.json").read_text())["metrics"]
    )


def test_the_offline_modal_body_runs_the_example_from_the_volume(project, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    monkeypatch.setenv("EEGCACHE_MODAL", "modal.local_packages=[shallow_trainer]")
    deployed = load_app("eegcache_modal_app_example", project)
    assert deployed.SETTINGS.local_packages == ("shallow_trainer",)
    version = dvc.version_at(project).hash
    stand_ins = f"cache.volume_root={tmp_path / 'results'} cache.mount_point="
    with container(deployed, project, tmp_path / "project") as root:
        deployed.prepare.local(version, stand_ins, project=str(root))
        out = deployed.train.local(version, f"{stand_ins} train=shallow {' '.join(SMALL)}", project=str(root))
    run = Path(out["run_dir"])
    assert run.is_relative_to(tmp_path / "results" / "runs") and (run / "model.pt").is_file()
    assert 0.0 <= out["metrics"]["dev_auroc"] <= 1.0
    assert os.environ.get("SHALLOW_STOP_AFTER_BATCHES") is None
