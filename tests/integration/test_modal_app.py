"""The Modal app offline: its functions' resources through ``Function.info()`` (no account, no network), and their
bodies run with ``.local()`` against the local SeaweedFS server, temporary directories standing in for the Volume
(``/results``) and the bucket mounts, and the real DVC and git."""

from __future__ import annotations

import ast
import importlib.util
import re
import shlex
import shutil
from pathlib import Path

import modal
import pytest
import yaml

from eegcache import config, remote, resolve, volume
from tests.conftest import REPO
from tests.integration import modal_image
from tests.integration.projects import BIN, files, make_project, sh

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:The .* function is executing locally:UserWarning"),
]
MODAL = yaml.safe_load((REPO / "conf" / "modal" / "default.yaml").read_text())
CONTAINER = config.load(REPO, ["paths=modal", "data=tusz"], local=False)  # what the app selects
APP_FILE = REPO / "deploy" / "modal" / "app.py"


@pytest.fixture(scope="module")
def app():
    spec = importlib.util.spec_from_file_location("eegcache_modal_app", APP_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def project(tmp_path_factory, demo_corpus, s3_server) -> Path:
    return make_project(tmp_path_factory.mktemp("modal_repo"), demo_corpus, s3_server, push=True)


def test_train_runs_on_an_a100_with_the_volume_and_read_only_bucket_mounts(app):
    info = app.train.info()
    assert info.gpus == [("A100-80GB", 1)] and MODAL["gpu"] == "A100-80GB"
    assert (info.timeout, info.cpu, info.memory_mib) == (MODAL["train_timeout_s"], MODAL["train_cpu"], MODAL["train_memory_mib"])
    assert {path: v.name for path, v in info.volumes.items()} == {"/results": MODAL["volume_name"]}
    ((path, mount),) = info.cloud_bucket_mounts.items()
    assert (path, mount.bucket_name, mount.key_prefix, mount.read_only) == ("/s3-cache", MODAL["bucket"], MODAL["cache_prefix"], True)
    assert mount.key_prefix.endswith("/")
    assert info.secrets == ["modal.Secret.from_name('aws-s3-secret')"]


def test_build_functions_run_on_cpus_with_the_raw_data_mount(app):
    for function in (app.build_shard, app.build_cache):
        info = function.info()
        assert info.gpus == [] and (info.cpu, info.memory_mib) == (MODAL["build_cpu"], MODAL["build_memory_mib"])
        assert {path: v.name for path, v in info.volumes.items()} == {"/results": MODAL["volume_name"]}
        ((path, mount),) = info.cloud_bucket_mounts.items()
        assert (path, mount.key_prefix, mount.read_only) == (CONTAINER.data.raw_dir, MODAL["raw_prefix"], True)
        assert path.startswith("/data/")  # conf/paths/modal.yaml
        assert mount.key_prefix.endswith("/")
    assert app.build_cache.info().secrets == ["modal.Secret.from_name('aws-s3-secret')"]  # it pushes
    assert app.verify.info().gpus == [] and app.verify.info().secrets == ["modal.Secret.from_name('aws-s3-secret')"]


def test_the_image_installs_exactly_the_runtime_lock(app):
    """The one pip step of the image is ``pip install -r`` of requirements.lock, copied from this repo."""
    base = "RUN pip install --upgrade pip wheel uv"  # debian_slim's own tools
    installs = [c for c in modal_image.commands(app.image) if "pip install" in c and c != base]
    assert installs == ["RUN python -m pip install -r /.requirements.txt"]
    assert modal_image.context_files(app.image) == {"/.requirements.txt": str(REPO / "requirements.lock")}
    assert app.SETTINGS.python_version == "3.11" and "--python-version 3.11" in (REPO / "Makefile").read_text()


def test_the_cache_mount_is_the_dvc_remote_prefix():
    dvc_config = (REPO / ".dvc" / "config").read_text()
    assert f"url = s3://{MODAL['bucket']}/{MODAL['cache_prefix'].rstrip('/')}\n" in dvc_config


def container_copy(app, project: Path, where: Path) -> Path:
    """What the image holds of the project: the DVC metadata and conf/, no git, no data; plus the git-ignored
    config.local standing in for the endpoint and the secret's credentials."""
    for name in (*app.DVC_FILES, ".dvc/config.local"):
        (where / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(project / name, where / name)
    shutil.copytree(project / "conf", where / "conf")
    return where


def test_train_pulls_the_version_with_dvc_then_trains(app, project, tmp_path):
    version = remote.version_at(project, "cache-v1").hash  # read with git, as the local entrypoint does
    root = container_copy(app, project, tmp_path / "project")
    vol = tmp_path / "results"
    stand_ins = f"cache.volume_root={vol} cache.mount_point={tmp_path / 'not-mounted'}"
    out = app.train.local(version, stand_ins, project=str(root))
    report = out["resolve"]
    assert [(a["source"], a["outcome"]) for a in report["attempts"]] == [("mount", "skipped"), ("remote", "used")]
    assert report["bytes"] == remote.version_at(project).size
    assert files(Path(report["path"])) == files(project / "cache" / "tusz")
    assert out["metrics"]["dev_auroc"] > 0.75  # it learned (chance is 0.5)
    assert (Path(out["run_dir"]) / "metrics.json").is_file() and Path(out["run_dir"]).parent == vol / "runs"
    again = app.train.local(version, stand_ins, project=str(root))  # warm: the Volume serves, nothing moves
    assert again["resolve"]["bytes"] == 0 and again["metrics"] == out["metrics"]


def test_train_uses_the_bucket_mount_when_there_is_one(app, project, tmp_path, s3_server):
    mount = tmp_path / "s3-cache"
    url = remote.remote_settings(project)["url"]
    sh(str(BIN / "s5cmd"), "--endpoint-url", s3_server.endpoint_url, "cp", f"{url}/*", f"{mount}/", cwd=tmp_path,
       env=s3_server.env())  # fmt: skip
    version = remote.version_at(project).hash
    out = app.train.local(version, f"cache.volume_root={tmp_path / 'results'} cache.mount_point={mount}",
                          project=str(project))  # fmt: skip
    assert out["resolve"]["source"] == "mount" and out["resolve"]["bytes"] > 0


def test_train_stops_with_the_resolver_error_instead_of_building(app, project, tmp_path):
    vol = tmp_path / "results"
    with pytest.raises(resolve.ResolveError) as caught:
        app.train.local("0" * 32 + ".dir", f"cache.volume_root={vol} cache.mount_point=", project=str(project))
    message = str(caught.value)
    assert "is not there" in message and "building is not allowed" in message
    assert not (vol / "runs").exists()  # nothing trained


def test_build_cache_map_body_matches_dvc_repro(app, project, tmp_path):
    """The sharded build (each shard's body run locally) gives the version `dvc repro` recorded in dvc.lock."""
    vol = tmp_path / "results"
    overrides = f"data.raw_dir={project / 'data' / 'tusz_demo'} cache.volume_root={vol}"
    summary = app.build_cache.local(overrides, project=str(project))
    assert summary["version"] == remote.version_at(project).hash
    assert files(Path(summary["path"])) == files(project / "cache" / "tusz")
    assert remote.verify_remote(project).ok
    assert volume.installed(vol) == [Path(summary["path"])]
    assert not (vol / "build").exists() or not any((vol / "build").iterdir())  # the staging copy is gone
    again = app.build_cache.local(overrides, project=str(project))  # a second build starts clean
    assert again["version"] == summary["version"] and again["uploaded"] == 0


def documented_commands() -> list[str]:
    """Every ``modal run`` command line of the README and of the app's docstring (comments stripped)."""
    texts = [(REPO / "README.md").read_text(), ast.get_docstring(ast.parse(APP_FILE.read_text())) or ""]
    found = [m.group(1).strip() for text in texts for m in re.finditer(r"^\s*(modal run [^#\n]*)", text, re.M)]
    assert len(found) >= 5, found  # the README's and the docstring's
    return found


def app_functions() -> list[str]:
    spec = importlib.util.spec_from_file_location("eegcache_modal_app_names", APP_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    runnable = (modal.Function, modal.app.LocalEntrypoint)  # what `modal run app.py::<name>` can name
    return sorted(name for name, value in vars(module).items() if isinstance(value, runnable))


def test_the_app_registers_every_function_the_readme_lists():
    assert app_functions() == ["build_cache", "build_shard", "main", "train", "verify"]


@pytest.mark.parametrize("command", [f"modal run deploy/modal/app.py::{name}" for name in app_functions()]
                         + documented_commands())  # fmt: skip
def test_every_function_and_documented_modal_run_command_parses(command):
    """``modal run`` parses only plain parameter types; ``--help`` after the command's own options parses them all
    (an unknown option or an unparseable annotation fails) and stops before anything reaches Modal."""
    args = shlex.split(command)
    assert args[:2] == ["modal", "run"]
    proc = sh(str(BIN / "modal"), *args[1:], "--help", cwd=REPO, check=False)
    assert proc.returncode == 0 and "unparseable" not in proc.stderr, proc.stderr
    assert proc.stdout.startswith(f"Usage: modal run {args[2]}")
    assert all(f"  {arg} " in proc.stdout for arg in args if arg.startswith("--")), proc.stdout  # its own options
