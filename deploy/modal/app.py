"""eegcache on Modal: A100 training that first puts the right cache version on the Volume (pulled with DVC from S3,
never built on the GPU unless allowed), a cache build spread over CPU containers with ``.map``, and remote checks.

    modal run deploy/modal/app.py --rev cache-v1 --overrides "cache=volume_first train.epochs=20"
    modal run deploy/modal/app.py::build_cache --overrides "data.split_policy=patient_disjoint"
    modal run deploy/modal/app.py::verify --version <md5>.dir

Everything here is thin: the work is done by ``eegcache.resolve``, ``eegcache.build``, ``eegcache.remote`` and
``eegcache.train``. The configuration comes by the project's one road (``eegcache.config.load``) with ``paths=modal``
selected: resources, names, bucket and prefixes from the ``modal`` group, the Volume and mount points from
``conf/paths/modal.yaml``. The functions' bodies also run offline with ``.local()`` (the tests do), where ``project``
and the ``cache.volume_root``/``cache.mount_point``/``data.raw_dir`` overrides point at local stand-ins.
"""

from __future__ import annotations

import os
import shlex
import shutil
from pathlib import Path
from typing import Any

import modal
from rich.console import Console

from eegcache import config, remote, resolve, shards, volume
from eegcache import train as trainer

CONTAINER_PROJECT = "/root/project"
PROJECT = Path(os.environ.get("EEGCACHE_PROJECT") or Path(__file__).resolve().parents[2])
# conf/paths/modal.yaml: the Volume at /results, the bucket mounts; the bucket's raw prefix is the real corpus
PATHS = ["paths=modal", "data=tusz"]
CONTAINER = config.load(PROJECT, PATHS, local=False)  # never this laptop's conf/local
SETTINGS = CONTAINER.modal
VOLUME_PATH, RAW_MOUNT, CACHE_MOUNT = CONTAINER.cache.volume_root, CONTAINER.data.raw_dir, CONTAINER.cache.mount_point
DVC_FILES = (".dvc/config", "dvc.yaml", "dvc.lock", "params.yaml")
LOCK = "requirements.lock"  # the runtime dependencies pinned from pyproject.toml (`make lock`)


def _image() -> modal.Image:
    image = (
        modal.Image.debian_slim(python_version=SETTINGS.python_version)
        .apt_install("git")
        .pip_install_from_requirements(str(PROJECT / LOCK))  # the pins `make venv` installs too (`make lock`)
        .env({"EEGCACHE_PROJECT": CONTAINER_PROJECT, "DVC_NO_ANALYTICS": "1"})
        .add_local_python_source("eegcache")
        .add_local_dir(PROJECT / "conf", f"{CONTAINER_PROJECT}/conf", ignore=["local/default.yaml"])
    )
    for name in DVC_FILES:  # the DVC metadata the container needs; the data comes from the remote
        image = image.add_local_file(PROJECT / name, f"{CONTAINER_PROJECT}/{name}")
    return image


app = modal.App(SETTINGS.app_name)
image = _image()
results = modal.Volume.from_name(SETTINGS.volume_name, create_if_missing=True)
aws = modal.Secret.from_name(SETTINGS.secret_name)
raw_data = modal.CloudBucketMount(SETTINGS.bucket, key_prefix=SETTINGS.raw_prefix, secret=aws, read_only=True)
dvc_remote = modal.CloudBucketMount(SETTINGS.bucket, key_prefix=SETTINGS.cache_prefix, secret=aws, read_only=True)


def _config(project: Path, overrides: list[str]) -> config.Config:
    """conf/ composed with the container's paths selected, then the caller's overrides (which win)."""
    return config.load(project, [*PATHS, *overrides], local=False)


def _commit_volume() -> None:
    if not modal.is_local():  # a local run has no Volume to commit
        results.commit()


def _split(overrides: str) -> list[str]:
    """Hydra overrides given as one string (``modal run`` parses only plain types), split as a shell would."""
    return shlex.split(overrides)


def _project(project: str) -> Path:
    """The project's DVC metadata and conf/: the image's copy, or ``project`` (tests, local runs)."""
    return Path(project) if project else PROJECT


@app.function(image=image, gpu=SETTINGS.gpu, timeout=SETTINGS.train_timeout_s, cpu=SETTINGS.train_cpu,
              memory=SETTINGS.train_memory_mib, volumes={VOLUME_PATH: results, CACHE_MOUNT: dvc_remote},
              secrets=[aws])  # fmt: skip
def train(version: str, overrides: str = "", project: str = "") -> dict[str, Any]:
    """Resolve ``version`` (``<md5>.dir``) onto the Volume with the configured preset (default: the bucket mount,
    then the DVC remote, then the Volume; never a build unless ``cache.allow_build=true``), then train on it.
    A resolver error (no valid source) stops the run before any training."""
    root, extra = _project(project), _split(overrides)
    cfg = _config(root, [f"cache.version={version}", *extra])
    report = resolve.resolve(cfg, root, say=print, asked=config.requested(root, extra))
    if report.bytes or report.source == "build":
        _commit_volume()
    Console().print(resolve.table(report))
    run_dir = resolve.volume_root(cfg, root) / "runs" / version.removesuffix(".dir")
    outputs = [f"build.out_dir={report.path}", f"train.metrics_file={run_dir / 'metrics.json'}",
               f"train.roc_file={run_dir / 'roc.json'}", f"train.model_file={run_dir / 'model.json'}"]  # fmt: skip
    result = trainer.run_train(_config(root, [f"cache.version={version}", *extra, *outputs]))
    _commit_volume()
    print({key: value for key, value in result.metrics.items() if key.startswith(cfg.train.eval_split)})
    return {"resolve": report.as_dict(), "metrics": result.metrics, "run_dir": str(run_dir)}


@app.function(image=image, cpu=SETTINGS.build_cpu, memory=SETTINGS.build_memory_mib, timeout=SETTINGS.build_timeout_s,
              volumes={VOLUME_PATH: results, RAW_MOUNT: raw_data})  # fmt: skip
def build_shard(rels: str, overrides: str = "", project: str = "") -> shards.ShardResult:
    """Process one share of the recordings (output rel paths, comma-separated) into the Volume's staging directory."""
    root = _project(project)
    if not modal.is_local():
        results.reload()
    shard = shards.build_shard(_build_config(root, _split(overrides)), rels.split(","), root)
    _commit_volume()
    return shard


def _build_config(root: Path, overrides: list[str]) -> config.Config:
    cfg = _config(root, overrides)
    staging = resolve.volume_root(cfg, root) / "build" / config.stable_hash(config.stage_params(cfg))[:16]
    extra = [f"build.out_dir={staging / 'cache' / 'tusz'}", f"build.state_dir={staging / 'state'}",
             f"build.metrics_file={staging / 'cache_stats.json'}", "build.progress=false"]  # fmt: skip
    return _config(root, [*overrides, *extra])


@app.function(image=image, cpu=SETTINGS.build_cpu, memory=SETTINGS.build_memory_mib, timeout=SETTINGS.build_timeout_s,
              volumes={VOLUME_PATH: results, RAW_MOUNT: raw_data}, secrets=[aws])  # fmt: skip
def build_cache(overrides: str = "", project: str = "", push: bool = True) -> dict[str, Any]:
    """Build the cache from the raw bucket mount across ``modal.build_containers`` CPU containers into a staging
    directory on the Volume, merge the metadata, push the version to the DVC remote, install it on the Volume
    (then the staging directory goes); returns the version hash."""
    root = _project(project)
    extra = _split(overrides)
    cfg = _build_config(root, extra)
    planned = shards.plan_shards(cfg, SETTINGS.build_containers, root)
    calls = [(",".join(rels), overrides, project) for rels in planned]
    if modal.is_local():
        done = [build_shard.local(*call) for call in calls]
    else:
        done = list(build_shard.starmap(calls))
        results.reload()
    metadata = shards.merge_shards(cfg, done, root)
    out_dir = Path(cfg.build.out_dir)
    version, source = volume.tree_source(out_dir)
    uploaded = remote.push_tree(root, version, source) if push else 0
    versions = volume.versions_root(resolve.volume_root(cfg, root))
    installed, _ = volume.install(source, version, versions)
    staging = out_dir.parents[1]
    print(f"removing the staging directory {staging}: its content is installed as {installed}")
    shutil.rmtree(staging)  # our own intermediate; the next build starts from an empty one (merge refuses strays)
    _commit_volume()
    summary = {"version": version, "uploaded": uploaded, "files": len(metadata["files"]), "path": str(installed)}
    print(summary)
    return summary


@app.function(image=image, timeout=1800, secrets=[aws])
def verify(version: str, deep: bool = False, project: str = "") -> dict[str, Any]:
    """``remote-verify`` of ``version`` on the DVC remote: every object present (``deep``: re-hashed)."""
    root = _project(project)
    verdict = remote.verify_remote(root, deep=deep, version=remote.Version("modal", version, 0, 0))
    for problem in verdict.problems:
        print(f"- {problem}")
    return {"version": version, "ok": verdict.ok, "objects": verdict.objects, "problems": list(verdict.problems)}


@app.local_entrypoint()
def main(rev: str = "", overrides: str = "", action: str = "train") -> None:
    """Read the cache version that ``dvc.lock`` names at ``rev`` (here, with git), then run ``action`` with it."""
    version = remote.version_at(PROJECT, rev or None).hash
    print(f"cache version {version} (dvc.lock at {rev or 'the working tree'})")
    if action == "train":
        print(train.remote(version, overrides))
    elif action == "verify":
        print(verify.remote(version))
    else:
        raise SystemExit(f"--action {action!r}: expected train or verify")


if __name__ == "__main__":  # `make demo`: the train body run here, pulling into a temporary stand-in for the Volume
    import json
    import sys
    import tempfile

    stand_in = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="eegcache-volume-")
    outcome = train.local(remote.version_at(PROJECT).hash, f"cache.volume_root={stand_in} cache.mount_point=")
    print(json.dumps({"cache": outcome["resolve"]["path"], "metrics": outcome["metrics"]}, indent=1))
