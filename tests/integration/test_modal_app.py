"""The Modal app offline: its functions' resources through ``Function.info()`` and its image, Volume and secret
through the SDK's objects (no account, no network); their bodies run with ``.local()`` in a read-only copy of exactly
the files the image adds, against the local SeaweedFS server, temporary directories standing in for the Volume
(``/results``) and the bucket mounts, and the real DVC and git."""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import importlib.util
import json
import re
import shlex
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import modal
import pytest
import yaml

from eegcache import config
from eegcache.errors import ConfigError, CorpusError, TrainError
from eegcache.train import runs
from eegcache.versions import dvc, verify
from eegcache.volume import layout, resolve
from tests.conftest import REPO
from tests.fixtures import my_trainer
from tests.integration import modal_image
from tests.integration.projects import BIN, files, make_project, mirror_remote, read_only, sh

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:The .* function is executing locally:UserWarning"),
]
MODAL = yaml.safe_load((REPO / "conf" / "modal" / "default.yaml").read_text())
CONTAINER = config.load(REPO, ["paths=modal", "data=tusz"], local=False)  # what the app selects
APP_FILE = REPO / "deploy" / "modal" / "app.py"
SECRET = ["modal.Secret.from_name('aws-s3-secret')"]


def load_app(name: str, project: Path | None = None):
    """A fresh import of the app; ``project``: the project it deploys (EEGCACHE_PROJECT, as in the container)."""
    with pytest.MonkeyPatch.context() as env:
        if project is not None:
            env.setenv("EEGCACHE_PROJECT", str(project))
        spec = importlib.util.spec_from_file_location(name, APP_FILE)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def app():
    return load_app("eegcache_modal_app")


@pytest.fixture(scope="module")
def project(tmp_path_factory, demo_corpus, s3_server) -> Path:
    return make_project(tmp_path_factory.mktemp("modal_repo"), demo_corpus, s3_server, push=True)


@pytest.fixture(scope="module")
def deployed(project):
    """The app deploying the test project: its image adds that project's conf/ and DVC metadata."""
    return load_app("eegcache_modal_app_of_the_test_project", project)


@contextlib.contextmanager
def container(deployed, project: Path, where: Path) -> Iterator[Path]:
    """A read-only copy of exactly what the image adds below /root/project (built from the image's layers), plus
    the git-ignored .dvc/config.local standing in for the secret (the test server's endpoint and credentials)."""
    copy = modal_image.copy_added_files(deployed.image, deployed.CONTAINER_PROJECT, where)
    (copy / ".dvc" / "config.local").write_bytes((project / ".dvc" / "config.local").read_bytes())
    before = files(copy)
    with read_only(copy):
        yield copy
    assert files(copy) == before  # nothing was written there


def test_only_train_has_a_gpu_and_every_function_its_configured_resources_and_retries(app):
    resources = {  # function -> (gpu, cpu, memory, timeout, retries)
        app.prepare: (
            [],
            MODAL["prepare_cpu"],
            MODAL["prepare_memory_mib"],
            MODAL["prepare_timeout_s"],
            MODAL["retries"],
        ),
        app.train: (
            [(MODAL["gpu"], 1)],
            MODAL["train_cpu"],
            MODAL["train_memory_mib"],
            MODAL["train_timeout_s"],
            MODAL["train_retries"],
        ),
        app.build_shard: (
            [],
            MODAL["build_cpu"],
            MODAL["build_memory_mib"],
            MODAL["build_timeout_s"],
            MODAL["retries"],
        ),
        app.build_cache: ([], MODAL["build_cpu"], MODAL["build_memory_mib"], MODAL["build_cache_timeout_s"], None),
        app.verify: ([], MODAL["verify_cpu"], MODAL["verify_memory_mib"], MODAL["verify_timeout_s"], MODAL["retries"]),
    }
    for function, expected in resources.items():
        info = function.info()
        assert (info.gpus, info.cpu, info.memory_mib, info.timeout, info.max_retries) == expected
    assert MODAL["gpu"] == "A100-80GB" and MODAL["train_retries"] >= 1 and MODAL["retries"] >= 1
    assert MODAL["build_cache_timeout_s"] > MODAL["build_timeout_s"]  # it waits for every shard


def test_the_gpu_reads_the_volume_only_and_the_cpu_functions_hold_the_mounts_and_the_secret(app):
    volume_only = {"/results": MODAL["volume_name"]}
    train = app.train.info()
    assert {p: v.name for p, v in train.volumes.items()} == volume_only and not train.cloud_bucket_mounts
    assert train.secrets == []
    prepare = app.prepare.info()
    assert {p: v.name for p, v in prepare.volumes.items()} == volume_only and prepare.secrets == SECRET
    ((path, mount),) = prepare.cloud_bucket_mounts.items()
    assert (path, mount.bucket_name, mount.key_prefix, mount.read_only) == (
        "/s3-cache",
        MODAL["bucket"],
        MODAL["cache_prefix"],
        True,
    )
    for function in (app.build_shard, app.build_cache):
        info = function.info()
        assert {p: v.name for p, v in info.volumes.items()} == volume_only
        ((path, mount),) = info.cloud_bucket_mounts.items()
        assert (path, mount.key_prefix, mount.read_only) == (CONTAINER.data.raw_dir, MODAL["raw_prefix"], True)
        assert path.startswith("/data/") and mount.key_prefix.endswith("/")  # conf/paths/modal.yaml
    assert app.build_cache.info().secrets == SECRET and app.verify.info().secrets == SECRET  # they push / read S3


def test_the_volume_is_v2_and_the_secret_requires_the_aws_keys(app):
    assert modal_image.loader_scope(app.results)["version"] == 2  # many concurrent writers, hard links
    assert modal_image.loader_scope(app.results)["name"] == MODAL["volume_name"]
    assert modal_image.loader_scope(app.aws)["required_keys"] == ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]


def test_the_image_installs_exactly_the_runtime_lock(app):
    """The one pip step of the image is ``pip install -r`` of requirements.lock, copied from this repo."""
    base = "RUN pip install --upgrade pip wheel uv"  # debian_slim's own tools
    installs = [c for c in modal_image.commands(app.image) if "pip install" in c and c != base]
    assert installs == ["RUN python -m pip install -r /.requirements.txt"]
    assert modal_image.context_files(app.image) == {"/.requirements.txt": str(REPO / "requirements.lock")}
    assert app.SETTINGS.python_version == "3.11" and "--python-version 3.11" in (REPO / "Makefile").read_text()


def test_the_image_adds_the_users_packages_and_extra_pins_from_the_modal_config(app):
    settings = dataclasses.replace(app.SETTINGS, local_packages=("tests",), pip_extra=("einops==0.8.0",))
    image = app._image(settings)
    installs = [c for c in modal_image.commands(image) if "pip install" in c and "upgrade" not in c]
    # the extras are constrained by the lock the first step copied into the image: they never move a locked pin
    assert installs == [
        "RUN python -m pip install -r /.requirements.txt",
        "RUN python -m pip install einops==0.8.0 -c /.requirements.txt",
    ]
    assert app.IMAGE_LOCK in modal_image.context_files(image)
    modules = [e.module_name for layer in modal_image.layers(image) for e in layer.entries if hasattr(e, "module_name")]
    assert modules == ["eegcache", "tests"]
    assert "local_packages: []" in (REPO / "conf" / "modal" / "default.yaml").read_text()  # none by default


def test_the_images_eegcache_source_knows_its_version_without_installed_metadata():
    """The image adds eegcache as source only (no dist-info, like ``python -S`` here) and every cache's metadata
    records ``package_version``: a Modal build writes a local build's bytes only if both know the same version."""
    proc = sh(
        sys.executable,
        "-S",
        "-c",
        "import eegcache; print(eegcache.__version__)",
        cwd=REPO,
        env={"PYTHONPATH": str(REPO / "src")},
    )
    assert proc.stdout.strip() == metadata.version("eegcache") != ""


def test_the_image_adds_the_packages_source_without_the_dev_tools(app):
    """The image carries every Python file of eegcache's runtime; the dev tools (demo corpus, local S3 server) stay
    on the machine that launches it (only the CLI imports them: test_layout)."""
    package = REPO / "src" / "eegcache"
    runtime = {
        p.relative_to(package).as_posix()
        for p in package.rglob("*.py")
        if "devtools" not in p.relative_to(package).parts and "__pycache__" not in p.parts
    }
    added = modal_image.python_sources(app.image, "eegcache")
    assert added == runtime and "volume/resolve.py" in added and "core/store.py" in added
    assert (package / "devtools" / "s3local.py").is_file() and not [a for a in added if a.startswith("devtools/")]


def test_the_image_adds_conf_and_the_dvc_metadata_and_nothing_else_of_the_project(app):
    added = modal_image.added_files(app.image, app.CONTAINER_PROJECT)
    assert sorted(n for n in added if not n.startswith("conf/")) == sorted(app.DVC_FILES)
    assert {n for n in added if n.startswith("conf/")} == {
        p.relative_to(REPO).as_posix()
        for p in (REPO / "conf").rglob("*.yaml")
        if p.parent.name != "local" or p.name != "default.yaml"
    }


def test_the_cache_mount_is_the_dvc_remote_prefix():
    dvc_config = (REPO / ".dvc" / "config").read_text()
    assert f"url = s3://{MODAL['bucket']}/{MODAL['cache_prefix'].rstrip('/')}\n" in dvc_config


def test_prepare_pulls_on_cpus_then_train_reads_the_volume_in_a_read_only_container(
    deployed, project, tmp_path, capsys
):
    version = dvc.version_at(project, "cache-v1").hash  # read with git, as the local entrypoint does
    vol = tmp_path / "results"
    stand_ins = f"cache.volume_root={vol} cache.mount_point={tmp_path / 'not-mounted'}"
    with container(deployed, project, tmp_path / "project") as root:
        out = deployed.prepare_and_train(version, stand_ins, local=True, project=str(root))
    prepared = out["prepare"]["resolve"]
    assert [(a["source"], a["outcome"]) for a in prepared["attempts"]] == [("mount", "skipped"), ("remote", "used")]
    assert prepared["bytes"] == dvc.version_at(project).size
    assert [(a["source"], a["outcome"], a["bytes"]) for a in out["resolve"]["attempts"]] == [("volume", "used", 0)]
    assert out["resolve"]["preset"] == "offline"  # the GPU moved no byte
    assert files(Path(out["resolve"]["path"])) == files(project / "cache" / "tusz")
    assert out["metrics"]["dev_auroc"] > 0.75  # it learned (chance is 0.5)
    run = Path(out["run_dir"])
    assert run.parent.parent == vol / "runs" / version.removesuffix(".dir")
    assert {"run.json", "result.json", "train.json", "roc.json", "baseline.json"} <= {p.name for p in run.iterdir()}
    assert json.loads((run / "result.json").read_text())["metrics"] == out["metrics"]
    assert [s["step"] for s in out["spent"]] == ["prepare", "train"] and out["spent"][1]["gpu"] == "A100-80GB"
    report = capsys.readouterr().out
    assert re.search(r"^train .* A100-80GB .* ~\$\d+\.\d{4}$", report, re.M) and "estimated ~$" in report


def test_a_deep_validation_is_done_by_prepare_on_cpus_never_again_on_the_gpu(deployed, project, tmp_path):
    version = dvc.version_at(project).hash
    overrides = f"cache.volume_root={tmp_path / 'results'} cache.mount_point= cache.validation=deep"
    with container(deployed, project, tmp_path / "project") as root:
        out = deployed.prepare_and_train(version, overrides, local=True, project=str(root))
    assert out["prepare"]["resolve"]["attempts"][-1]["reason"].endswith("valid (deep)")
    assert [a["reason"].rsplit("; ", 1)[-1] for a in out["resolve"]["attempts"]] == ["valid (fast)"]


def test_two_runs_never_share_a_directory(deployed, project, tmp_path):
    version = dvc.version_at(project).hash
    vol = tmp_path / "results"
    stand_ins = f"cache.volume_root={vol} cache.mount_point="
    with container(deployed, project, tmp_path / "project") as root:
        deployed.prepare.local(version, stand_ins, project=str(root))
        first = deployed.train.local(version, f"{stand_ins} train.epochs=2", project=str(root))
        other = deployed.train.local(version, f"{stand_ins} train.epochs=3", project=str(root))
        again = deployed.train.local(version, f"{stand_ins} train.epochs=2", project=str(root))
        with pytest.raises(TrainError, match="finished already"):  # a finished run is never written again
            deployed.train.local(
                version, f"{stand_ins} train.epochs=2", project=str(root), run_id=Path(first["run_dir"]).name
            )
    dirs = [Path(r["run_dir"]) for r in (first, other, again)]
    assert len(set(dirs)) == 3 and dirs[0].parent == dirs[2].parent != dirs[1].parent  # config hash, then run id
    for run in dirs:
        assert json.loads((run / "result.json").read_text())["metrics"] == json.loads((run / "train.json").read_text())


def test_a_users_trainer_gets_the_cache_and_config_and_resumes_from_its_checkpoint(
    deployed, project, tmp_path, monkeypatch
):
    version = dvc.version_at(project).hash
    vol = tmp_path / "results"
    stand_ins = f"cache.volume_root={vol} cache.mount_point="
    plugin = f"{stand_ins} train.entrypoint=tests.fixtures.my_trainer:fit train.epochs=5 train.learning_rate=0.25"
    with container(deployed, project, tmp_path / "project") as root:
        deployed.prepare.local(version, stand_ins, project=str(root))
        monkeypatch.setenv("MY_TRAINER_STOP_AFTER", "3")
        with pytest.raises(my_trainer.Preempted):  # the container goes away after epoch 3
            deployed.train.local(version, plugin, project=str(root), run_id="run-1")
        monkeypatch.delenv("MY_TRAINER_STOP_AFTER")
        out = deployed.train.local(version, plugin, project=str(root), run_id="run-1")  # Modal's retry: same run
    assert out["metrics"] == {"epochs": 5, "resumed_from": 3, "train_windows": out["metrics"]["train_windows"]}
    assert out["metrics"]["train_windows"] > 0
    run = Path(out["run_dir"])
    assert run.name == "run-1" and (run / "model.txt").read_text() == "0.25\n"
    assert json.loads((run / "checkpoint" / "state.json").read_text())["epoch"] == 5
    assert (
        json.loads((run / "run.json").read_text())["config"]["train"]["entrypoint"] == "tests.fixtures.my_trainer:fit"
    )


def test_a_retried_train_call_without_a_run_id_resumes_in_its_own_run(deployed, project, tmp_path, monkeypatch):
    """``modal run ...::train`` passes no run id; Modal retries a preempted input under the same input id (another
    attempt token), set here as the SDK's container entrypoint sets it: the retry goes on in the same run."""
    from modal._runtime.execution_context import _set_current_context_ids

    version = dvc.version_at(project).hash
    stand_ins = f"cache.volume_root={tmp_path / 'results'} cache.mount_point="
    plugin = f"{stand_ins} train.entrypoint=tests.fixtures.my_trainer:fit train.epochs=4"
    with container(deployed, project, tmp_path / "project") as root:
        deployed.prepare.local(version, stand_ins, project=str(root))
        monkeypatch.setenv("MY_TRAINER_STOP_AFTER", "2")
        for attempt in ("attempt-1", "attempt-2"):
            reset = _set_current_context_ids(["in-01retried"], ["fc-01retried"], [attempt])
            try:
                if attempt == "attempt-1":
                    with pytest.raises(my_trainer.Preempted):
                        deployed.train.local(version, plugin, project=str(root))
                    monkeypatch.delenv("MY_TRAINER_STOP_AFTER")
                else:
                    out = deployed.train.local(version, plugin, project=str(root))
            finally:
                reset()
        fresh = deployed.train.local(version, plugin, project=str(root))  # outside a Modal input: a new run
    assert Path(out["run_dir"]).name == "in-01retried" and out["metrics"]["resumed_from"] == 2
    assert Path(fresh["run_dir"]).name != "in-01retried" and fresh["metrics"]["resumed_from"] == 0


def test_an_entrypoint_that_does_not_import_is_a_config_error():
    with pytest.raises(ConfigError, match="modal.local_packages"):
        runs.load_trainer("no_such_package.fit:main")
    with pytest.raises(ConfigError, match="module:function"):
        config.load(REPO, ["train.entrypoint=eegcache.train"], local=False)


def test_prepare_uses_the_bucket_mount_when_there_is_one(deployed, project, tmp_path, s3_server):
    mount = mirror_remote(project, s3_server, tmp_path / "s3-cache")
    version = dvc.version_at(project).hash
    with container(deployed, project, tmp_path / "project") as root:
        out = deployed.prepare.local(
            version, f"cache.volume_root={tmp_path / 'results'} cache.mount_point={mount}", project=str(root)
        )
    assert out["resolve"]["source"] == "mount" and out["resolve"]["bytes"] > 0


def test_train_reads_only_the_volume_and_says_to_prepare_first(deployed, project, tmp_path):
    vol = tmp_path / "results"
    version = dvc.version_at(project).hash
    with container(deployed, project, tmp_path / "project") as root, pytest.raises(resolve.ResolveError) as caught:
        deployed.train.local(version, f"cache.volume_root={vol} cache=s3_first", project=str(root))
    message = str(caught.value)
    assert "is not on the volume" in message and "`prepare`" in message and "remote" not in message.split("\n")[1]
    assert not (vol / "runs").exists()  # nothing trained


def test_in_a_container_a_deterministic_failure_is_returned_so_modal_spends_no_retry(
    deployed, project, tmp_path, monkeypatch
):
    """Modal retries every exception: a version absent from the Volume would cost ``train_retries`` + 1 GPU starts.
    In a container eegcache's own errors come back as a result; the local entrypoint turns it into an exit."""
    vol = tmp_path / "results"
    version = dvc.version_at(project).hash
    with container(deployed, project, tmp_path / "project") as root:
        monkeypatch.setattr(deployed, "_in_container", lambda: True)  # the bodies' errors as inside a container
        out = deployed.train.local(version, f"cache.volume_root={vol}", project=str(root))
        assert out["kind"] == "ResolveError" and "is not on the volume" in out["error"]
        with pytest.raises(SystemExit, match="(?s)train: ResolveError: .*is not on the volume"):
            deployed._outcome(out, "train")
        bad = deployed.prepare.local(version, "cache.jobs=100000000", project=str(root))
        assert bad["kind"] == "ConfigError" and "cache.jobs" in bad["error"]
    assert not (vol / "runs").exists()  # nothing trained


@pytest.mark.parametrize("function", ["prepare", "train"])
def test_allow_build_is_refused_with_the_way_to_build_on_cpus(deployed, project, tmp_path, function):
    with pytest.raises(ConfigError, match="build_cache") as caught:
        getattr(deployed, function).local(
            dvc.version_at(project).hash, f"cache.volume_root={tmp_path} cache.allow_build=true", project=str(project)
        )
    assert "never build" in str(caught.value)
    assert not any(tmp_path.iterdir())  # refused before anything was written


@pytest.mark.parametrize("version", ["../../etc", "x; rm -rf /", "0123456789abcdef0123456789abcdef"])
def test_verify_refuses_a_version_that_is_not_a_cache_version_before_reaching_s3(deployed, project, version):
    with pytest.raises(ConfigError, match="--version: .* is not a (DVC object id|cache version)"):
        deployed.verify.local(version, project=str(project))


@pytest.mark.parametrize("function", ["prepare", "train"])
def test_an_unclosed_quote_in_the_overrides_is_a_config_error(deployed, project, tmp_path, function):
    with pytest.raises(ConfigError, match="--overrides .*quote"):
        getattr(deployed, function).local(
            dvc.version_at(project).hash, "train.entrypoint='my_pkg:fit", project=str(project)
        )


def test_build_cache_plans_once_and_matches_dvc_repro_in_a_read_only_container(
    deployed, project, tmp_path, monkeypatch
):
    """The sharded build (each shard's body run here) gives the version `dvc repro` recorded in dvc.lock; the
    corpus is listed and each annotation parsed once (by build_cache), never by a shard."""
    from eegcache.core import corpus

    listed, parsed = [], []
    survey, parse = corpus.survey, corpus.parse_annotation  # what builder.plan.make_plan calls
    monkeypatch.setattr(corpus, "survey", lambda *args: listed.append(args) or survey(*args))
    monkeypatch.setattr(corpus, "parse_annotation", lambda path: parsed.append(path) or parse(path))
    vol = tmp_path / "results"
    overrides = f"data.raw_dir={project / 'data' / 'tusz_demo'} cache.volume_root={vol}"
    with container(deployed, project, tmp_path / "project") as root:
        summary = deployed.build_cache.local(overrides, project=str(root))
        assert len(listed) == 1 and len(parsed) == len(set(parsed)) == summary["files"]
        assert summary["version"] == dvc.version_at(project).hash
        assert files(Path(summary["path"])) == files(project / "cache" / "tusz")
        assert verify.verify_remote(project).ok
        assert layout.installed(vol) == [Path(summary["path"])]
        assert not (vol / "build").exists() or not any((vol / "build").iterdir())  # the staging copy is gone
        assert [s["step"] for s in summary["spent"]][-1] == "build" and len(summary["spent"]) >= 2
        again = deployed.build_cache.local(overrides, project=str(root))  # a second build starts clean
    assert again["version"] == summary["version"] and again["uploaded"] == 0


def test_a_shard_named_on_the_command_line_plans_for_itself_and_refuses_unknown_recordings(deployed, project, tmp_path):
    overrides = f"data.raw_dir={project / 'data' / 'tusz_demo'} cache.volume_root={tmp_path}"
    with pytest.raises(CorpusError, match="train/nobody_s001_t000.npz"):
        deployed.build_shard.local("train/nobody_s001_t000.npz", overrides, project=str(project))


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
    assert app_functions() == ["build_cache", "build_shard", "main", "prepare", "train", "verify"]


@pytest.mark.parametrize(
    "command", [f"modal run deploy/modal/app.py::{name}" for name in app_functions()] + documented_commands()
)
def test_every_function_and_documented_modal_run_command_parses(command):
    """``modal run`` parses only plain parameter types; ``--help`` after the command's own options parses them all
    (an unknown option or an unparseable annotation fails) and stops before anything reaches Modal."""
    args = shlex.split(command)
    assert args[:2] == ["modal", "run"]
    proc = sh(str(BIN / "modal"), *args[1:], "--help", cwd=REPO, check=False)
    assert proc.returncode == 0 and "unparseable" not in proc.stderr, proc.stderr
    target = next(arg for arg in args if "app.py" in arg)
    assert proc.stdout.startswith(f"Usage: modal run {target}")
    own = [arg for arg in args[args.index(target) :] if arg.startswith("--")]  # after the target: the function's
    assert all(f"  {arg} " in proc.stdout for arg in own), proc.stdout
