"""A user's own trainer, written outside the package and selected with ``train=NAME``: one route (``eegcache train``,
the Modal ``train`` body offline, ``dvc exp run -S``), its free-form ``train.args``, and the Modal settings taken from
where users keep them (conf/local, ``EEGCACHE_MODAL``), never from a call's ``--overrides``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from eegcache.errors import ConfigError
from eegcache.versions import dvc
from tests.conftest import REPO
from tests.integration.modal_image import commands
from tests.integration.projects import make_project, sh
from tests.integration.test_modal_app import container, load_app

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:The .* function is executing locally:UserWarning"),
]

TRAINER = '''
import json
from eegcache.train.dataset import WindowDataset


def fit(*, cache_dir, config, run_dir, checkpoint_dir, commit):
    """Records the settings it was given and returns a metric made of them."""
    (run_dir / "args.json").write_text(json.dumps(config.train.args, sort_keys=True))
    split = config.train.eval_split
    ds = WindowDataset(cache_dir, split, window_s=config.train.window_s, stride_s=config.train.stride_s)
    return {f"{split}_windows": len(ds), f"{split}_lr": config.train.args["lr"]}


def clobber(*, run_dir, **_):
    """Files named like the baseline's tracked outputs, and an AUROC without the baseline's other metrics."""
    for name in ("train.json", "roc.json", "baseline.json"):
        (run_dir / name).write_text('{"hacked": true}')
    return {"dev_auroc": 0.5, "dev_loss": 0.25}
'''
MINE = """\
# a trainer of one's own: the shared keys of the default (splits, windows) and its own free-form args
defaults:
  - default
  - _self_
entrypoint: my_lab.fit:fit
args:
  lr: 0.1
  schedule:
    warmup: 2
"""


@pytest.fixture(scope="module")
def outside(tmp_path_factory) -> Path:
    """A folder outside the project and the package holding the user's package ``my_lab``."""
    where = tmp_path_factory.mktemp("outside")
    (where / "my_lab").mkdir()
    (where / "my_lab" / "__init__.py").write_text("")
    (where / "my_lab" / "fit.py").write_text(textwrap.dedent(TRAINER))
    return where


@pytest.fixture(scope="module")
def project(tmp_path_factory, demo_corpus, s3_server) -> Path:
    root = make_project(tmp_path_factory.mktemp("own_trainer"), demo_corpus, s3_server, push=True)
    (root / "conf" / "train" / "mine.yaml").write_text(MINE)
    sh("git", "add", "-A", cwd=root)
    sh("git", "commit", "-qm", "a trainer of our own", cwd=root)
    return root


def eegcache(*args: str, cwd: Path, outside: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(outside)}
    return sh(sys.executable, "-m", "eegcache.cli", *args, cwd=cwd, env=env, check=check)


def run_dir(stdout: str, cwd: Path) -> Path:
    line = next(line for line in stdout.splitlines() if line.startswith("run: "))
    return cwd / line.removeprefix("run: ").split(" (cache ")[0]


def test_eegcache_train_runs_the_selected_trainer_with_its_args_in_a_run_directory(project, outside):
    tracked = sh("git", "status", "--porcelain", cwd=project).stdout
    proc = eegcache(
        "train", "train=mine", "train.args.lr=0.5", "train.args.depth.layers=3", cwd=project, outside=outside
    )
    where = run_dir(proc.stdout, project)
    assert json.loads((where / "args.json").read_text()) == {
        "lr": 0.5,
        "schedule": {"warmup": 2},
        "depth": {"layers": 3},
    }
    assert "dev_lr 0.5" in proc.stdout
    record = json.loads((where / "run.json").read_text())
    assert record["config"]["train"]["entrypoint"] == "my_lab.fit:fit"
    assert record["version"] == dvc.version_at(project).hash  # the workspace's cache is the version dvc.lock names
    result = json.loads((where / "result.json").read_text())["metrics"]
    assert result["dev_lr"] == 0.5 and result["dev_windows"] > 0
    assert where.is_relative_to(project / ".eegcache" / "volume" / "runs" / record["version"].removesuffix(".dir"))
    assert sh("git", "status", "--porcelain", cwd=project).stdout == tracked  # no tracked file written

    other = run_dir(eegcache("train", "train=mine", "train.args.lr=0.6", cwd=project, outside=outside).stdout, project)
    again = ("train", "train=mine", "train.args.lr=0.5", "train.args.depth.layers=3")
    same = run_dir(eegcache(*again, cwd=project, outside=outside).stdout, project)
    # the config hash covers the args: other settings, another folder; the same settings, a new run beside the first
    assert other.parent != same.parent and same.parent == where.parent and same != where


def test_only_the_baseline_publishes_its_files_to_the_tracked_outputs(project, outside):
    tracked = sh("git", "status", "--porcelain", cwd=project).stdout
    proc = eegcache("train", "train=mine", "train.entrypoint=my_lab.fit:clobber", cwd=project, outside=outside)
    assert "dev_auroc 0.5, dev_loss 0.25" in proc.stdout and "wrote" not in proc.stdout
    assert json.loads((run_dir(proc.stdout, project) / "baseline.json").read_text()) == {"hacked": True}
    assert sh("git", "status", "--porcelain", cwd=project).stdout == tracked  # models/, metrics/ untouched


def test_the_baseline_refuses_free_form_args_instead_of_ignoring_them(project, outside):
    proc = eegcache("train", "train.args.epochs=5", cwd=project, outside=outside, check=False)
    assert proc.returncode == 2 and "takes no free-form settings" in proc.stderr and "train.epochs" in proc.stderr
    proc = eegcache("train", "modal.gpu=H100", cwd=project, outside=outside, check=False)
    assert proc.returncode == 2 and "modal.gpu=H100: the modal group shapes the image" in proc.stderr


def test_dvc_exp_run_composes_the_args_into_params_yaml_and_the_stage_command_runs_them(project, outside, tmp_path):
    work = Path(shutil.copytree(project, tmp_path / "work", symlinks=True))
    # a key the trainer's YAML declares is set as it is; one it does not takes Hydra's `++` in DVC's composition
    sh("dvc", "exp", "run", "-S", "train=mine", "-S", "train.args.lr=0.7", "-S", "++train.args.new=1", "build_cache",
       cwd=work)  # fmt: skip
    params = yaml.safe_load((work / "params.yaml").read_text())
    assert params["train"]["entrypoint"] == "my_lab.fit:fit"
    assert params["train"]["args"] == {"lr": 0.7, "schedule": {"warmup": 2}, "new": 1}
    where = run_dir(eegcache("train", "--params", "params.yaml", cwd=work, outside=outside).stdout, work)
    assert json.loads((where / "args.json").read_text())["lr"] == 0.7


def test_the_dvc_stage_refuses_another_trainer_or_baseline_args_and_keeps_the_tracked_files(project, outside, tmp_path):
    """The stage's outputs are the baseline's files: another trainer, or the baseline with args, is refused before
    anything runs, and the tracked outputs (``persist``) are left as they were, not deleted by DVC."""
    work = Path(shutil.copytree(project, tmp_path / "work", symlinks=True))
    outputs = {p: (work / p).read_bytes() for p in ("metrics/train.json", "metrics/roc.json", "models/baseline.json")}
    eegcache("params", "train=mine", cwd=work, outside=outside)
    proc = sh("dvc", "repro", "train", cwd=work, check=False, env={"PYTHONPATH": str(outside)})
    assert proc.returncode != 0 and "the DVC stage 'train' runs the baseline" in proc.stderr + proc.stdout
    eegcache("params", "++train.args.lr=0.1", cwd=work, outside=outside)
    proc = sh("dvc", "repro", "train", cwd=work, check=False)
    assert proc.returncode != 0 and "takes no free-form settings" in proc.stderr + proc.stdout
    assert {p: (work / p).read_bytes() for p in outputs} == outputs
    assert sh("git", "status", "--porcelain", cwd=work).stdout.split() == ["M", "params.yaml"]


def test_the_offline_modal_body_takes_the_same_selection_and_args(project, outside, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(outside))
    deployed = load_app("eegcache_modal_app_own_trainer", project)
    version = dvc.version_at(project).hash
    stand_ins = f"cache.volume_root={tmp_path / 'results'} cache.mount_point="
    with container(deployed, project, tmp_path / "project") as root:
        deployed.prepare.local(version, stand_ins, project=str(root))
        out = deployed.train.local(version, f"{stand_ins} train=mine train.args.lr=0.25", project=str(root))
        with pytest.raises(ConfigError, match="conf/local/default.yaml") as refused:
            deployed.train.local(version, f"{stand_ins} modal.gpu=H100", project=str(root))
    assert "EEGCACHE_MODAL='modal.gpu=H100'" in str(refused.value)
    assert out["metrics"]["dev_lr"] == 0.25
    assert json.loads((Path(out["run_dir"]) / "args.json").read_text()) == {"lr": 0.25, "schedule": {"warmup": 2}}


def test_the_modal_settings_come_from_conf_local_and_the_environment_and_travel_in_the_image(
    project, tmp_path, monkeypatch
):
    local = project / "conf" / "local" / "default.yaml"
    local.write_text("# @package _global_\nmodal:\n  train_retries: 0\n  gpu: L4\npaths:\n  data_dir: /elsewhere\n")
    try:
        app = load_app("eegcache_modal_app_local_settings", project)
        monkeypatch.setenv("EEGCACHE_MODAL", "modal.gpu=H100 modal.train_cpu=4")
        one_off = load_app("eegcache_modal_app_one_off", project)
        monkeypatch.setenv("EEGCACHE_MODAL", "train.epochs=3")
        with pytest.raises(ConfigError, match="only modal.. keys go there"):
            load_app("eegcache_modal_app_not_modal", project)
        monkeypatch.setenv("EEGCACHE_MODAL", "modal.local_packages=[no_such_lab_package]")
        with pytest.raises(ConfigError, match="no_such_lab_package cannot be imported on this machine"):
            load_app("eegcache_modal_app_missing_package", project)
    finally:
        local.unlink()
    info = app.train.info()
    assert (info.gpus, info.max_retries) == ([("L4", 1)], 0)
    assert app.CONTAINER.paths.data_dir != "/elsewhere"  # conf/local's paths never reach the container
    info = one_off.train.info()
    assert (info.gpus, info.cpu, info.max_retries) == ([("H100", 1)], 4.0, 0)
    carried = next(c for c in commands(one_off.image) if "EEGCACHE_MODAL_SETTINGS" in c)
    assert '"gpu": "H100"' in carried and '"train_retries": 0' in carried
    # in the container the module is imported again: the image's copy of the settings is what it uses
    monkeypatch.setenv("EEGCACHE_MODAL_SETTINGS", json.dumps(one_off.MODAL_GROUP))
    monkeypatch.delenv("EEGCACHE_MODAL")
    assert load_app("eegcache_modal_app_in_container", project).SETTINGS == one_off.SETTINGS
    assert os.environ.get("EEGCACHE_MODAL") is None


def test_the_offline_body_on_the_command_line_takes_overrides(project, outside, tmp_path):
    """`python deploy/modal/app.py VOLUME [OVERRIDES...]` (what `make demo` runs): prepare and train here."""
    app = REPO / "deploy" / "modal" / "app.py"
    env = {"PYTHONPATH": str(outside), "EEGCACHE_PROJECT": str(project)}
    proc = sh(sys.executable, str(app), str(tmp_path / "vol"), "train=mine", "train.args.lr=0.3", cwd=project, env=env)
    outcome = json.loads(proc.stdout[proc.stdout.rindex("\n{") :])
    assert outcome["metrics"]["dev_lr"] == 0.3 and outcome["cache"].startswith(str(tmp_path / "vol"))
    refused = sh(sys.executable, str(app), str(tmp_path / "vol"), "modal.gpu=T4", cwd=project, env=env, check=False)
    assert refused.returncode != 0 and "conf/local/default.yaml" in refused.stderr
