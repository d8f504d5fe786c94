"""eegcache on Modal: the cache version put on the Volume by a CPU container (pulled with DVC from S3, never built
there), then training on an A100 that reads it from the Volume only; a cache build spread over CPU containers; checks.

    modal run --detach deploy/modal/app.py --rev cache-v1 --overrides "cache=volume_first train.epochs=20"
    modal run deploy/modal/app.py::prepare --version <md5>.dir
    modal run deploy/modal/app.py::train --version <md5>.dir --overrides "train.entrypoint=my_pkg.fit:main"
    modal run --detach deploy/modal/app.py::build_cache --overrides "data.split_policy=patient_disjoint"
    modal run deploy/modal/app.py::verify --version <md5>.dir --deep

Everything here is wiring: the work is done by ``eegcache.volume.resolve``, ``eegcache.builder.shards``,
``eegcache.volume.install``, ``eegcache.versions`` and ``eegcache.train.runs`` (which calls the trainer
``train.entrypoint`` names). The configuration comes by the project's one
road (``eegcache.config.load``) with ``paths=modal`` selected: resources, retries, prices, names, bucket and prefixes
from the ``modal`` group, the Volume and mount points from ``conf/paths/modal.yaml``. The functions' bodies also run
offline with ``.local()`` (the tests do), where ``project`` and the ``cache.volume_root``/``cache.mount_point``/
``data.raw_dir`` overrides point at local stand-ins. Parameters are plain strings: ``modal run`` parses no lists.
"""

from __future__ import annotations

import atexit
import functools
import importlib.util
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import modal

from eegcache import config, launch, modal_settings, trust
from eegcache.builder import shards
from eegcache.core.identity import stable_hash
from eegcache.errors import ConfigError, EegcacheError
from eegcache.summary import literal_console
from eegcache.train import runs
from eegcache.versions import dvc, identity
from eegcache.versions import verify as verifying
from eegcache.versions.lockfile import Version
from eegcache.volume import install, layout, resolve

CONTAINER_PROJECT = "/root/project"
PROJECT = Path(os.environ.get("EEGCACHE_PROJECT") or Path(__file__).resolve().parents[2])
# conf/paths/modal.yaml: the Volume at /results, the bucket mounts; the bucket's raw prefix is the real corpus
PATHS = ["paths=modal", "data=tusz"]
CONTAINER = config.load(PROJECT, PATHS, local=False)  # never this laptop's conf/local paths
# the modal group: this machine's conf/ + conf/local + EEGCACHE_MODAL where `modal run` starts; the image carries it
SETTINGS, MODAL_GROUP = modal_settings.launch_settings(PROJECT, PATHS, os.environ)
VOLUME_PATH, RAW_MOUNT, CACHE_MOUNT = CONTAINER.cache.volume_root, CONTAINER.data.raw_dir, CONTAINER.cache.mount_point
DVC_FILES = (".dvc/config", "dvc.yaml", "dvc.lock", "params.yaml")
LOCK = "requirements.lock"  # the runtime dependencies pinned from pyproject.toml (`make lock`)
IMAGE_LOCK = "/.requirements.txt"  # where pip_install_from_requirements copies it in the image (modal/_image.py)
AWS_KEYS = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]


def _not_runtime(path: Path) -> bool:
    """What the image leaves out of the package: all but its Python sources, and the dev tools (demo corpus, local
    S3 server), which only the CLI imports."""
    return path.suffix != ".py" or "devtools" in path.parts


def _image(settings: modal_settings.ModalConfig = SETTINGS) -> modal.Image:
    """The lock's pins (what `make venv` installs too), then ``modal.pip_extra``; the local files last, so editing
    them rebuilds no layer: eegcache and ``modal.local_packages``, conf/ and the DVC metadata (never data)."""
    image = (
        modal.Image.debian_slim(python_version=settings.python_version)
        .apt_install("git")
        .pip_install_from_requirements(str(PROJECT / LOCK))
    )
    if settings.pip_extra:  # constrained by the lock: an extra that needs another numpy fails the image build
        image = image.pip_install(*settings.pip_extra, extra_options=f"-c {IMAGE_LOCK}")
    carried = json.dumps(MODAL_GROUP, sort_keys=True)
    image = image.env(
        {"EEGCACHE_PROJECT": CONTAINER_PROJECT, "DVC_NO_ANALYTICS": "1", modal_settings.ENV_SETTINGS: carried}
    )
    image = image.add_local_python_source("eegcache", ignore=_not_runtime)  # the dev tools stay on the laptop
    if settings.local_packages:
        image = image.add_local_python_source(*_local_packages(settings.local_packages))
    image = image.add_local_dir(PROJECT / "conf", f"{CONTAINER_PROJECT}/conf", ignore=["local/default.yaml"])
    for name in DVC_FILES:  # the DVC metadata the container needs; the data comes from the remote
        image = image.add_local_file(PROJECT / name, f"{CONTAINER_PROJECT}/{name}")
    return image


def _local_packages(names: tuple[str, ...]) -> tuple[str, ...]:
    """``modal.local_packages``, each importable where `modal run` starts (installed, or its parent folder on
    PYTHONPATH); ConfigError naming the one that is not. In a container the image already holds them."""
    if modal_settings.ENV_SETTINGS not in os.environ:
        missing = [name for name in names if importlib.util.find_spec(name) is None]
        if missing:
            raise ConfigError(
                f"modal.local_packages: {', '.join(missing)} cannot be imported on this machine, so Modal cannot "
                "add it to the image: install it (`pip install -e <its project>`) or put the folder holding it on "
                "PYTHONPATH (e.g. `PYTHONPATH=examples modal run deploy/modal/app.py ...`)"
            )
    return names


app = modal.App(SETTINGS.app_name)
image = _image()
# A v2 Volume (https://modal.com/docs/guide/volumes, "Volumes v2"): Modal's docs recommend at most five concurrent
# writers/commits on v1 and name v2 for many writers, which build_cache's shards are; v2 also supports hard links,
# which the volume's DVC cache uses to keep each object once (cache.type reflink,hardlink,symlink,copy elsewhere).
results = modal.Volume.from_name(SETTINGS.volume_name, create_if_missing=True, version=2)
aws = modal.Secret.from_name(SETTINGS.secret_name, required_keys=AWS_KEYS)  # fails at start-up, not mid-run
raw_data = modal.CloudBucketMount(SETTINGS.bucket, key_prefix=SETTINGS.raw_prefix, secret=aws, read_only=True)
dvc_remote = modal.CloudBucketMount(SETTINGS.bucket, key_prefix=SETTINGS.cache_prefix, secret=aws, read_only=True)


def _no_retry(body: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """A function body whose deterministic failures (eegcache's own errors: a configuration, a version not on the
    Volume, bad input) are returned in a container as ``{"error": ..., "kind": ...}`` rather than raised: Modal
    retries every exception, so raising them would spend each retry (and, for ``train``, each GPU start) on the
    same answer. Anything else (a preemption, a crash, a lost connection) still raises and is retried. Outside a
    container (``.local()``) the error raises as usual; :func:`_outcome` turns a returned one back into an error."""

    @functools.wraps(body)
    def once(*args: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            return body(*args, **kwargs)
        except EegcacheError as exc:
            if not _in_container():
                raise
            message = trust.redact(str(exc))
            print(f"{body.__name__}: error: {message}", file=sys.stderr)
            return {"error": message, "kind": type(exc).__name__}

    return once


def _in_container() -> bool:
    return not modal.is_local()


def _outcome(result: dict[str, Any], step: str) -> dict[str, Any]:
    """``result`` of a remote call; SystemExit with its message when the body returned a deterministic failure."""
    if "error" in result:
        raise SystemExit(f"{step}: {result['kind']}: {result['error']}")
    return result


def _retries(count: int) -> modal.Retries:
    return modal.Retries(max_retries=count, backoff_coefficient=2.0, initial_delay=10.0)


def _config(project: Path, overrides: list[str]) -> config.Config:
    """conf/ composed with the container's paths selected, then the caller's overrides (which win)."""
    return config.load(project, [*PATHS, *overrides], local=False)


def _commit_volume() -> None:
    if not modal.is_local():  # a local run has no Volume to commit
        results.commit()


def _reload_volume() -> None:
    if not modal.is_local():
        results.reload()


def _split(overrides: str) -> list[str]:
    """Hydra overrides given as one string (``modal run`` parses only plain types), split as a shell would."""
    try:
        split = shlex.split(overrides)
    except ValueError as exc:  # an unclosed quote
        raise ConfigError(f"--overrides {overrides!r}: {exc}; quote values as in a shell") from exc
    modal_settings.refuse_modal_overrides(split, "--overrides")
    return split


def _project(project: str) -> Path:
    """The project's DVC metadata and conf/: the image's copy, or ``project`` (tests, local runs); a writable copy
    of it when it is read-only (see :func:`_writable`)."""
    root = Path(project) if project else PROJECT
    return root if os.access(root / ".dvc", os.W_OK) else _writable(root)


@functools.cache
def _writable(root: Path) -> Path:
    """A copy of the read-only project (a few kB: conf/ and the DVC metadata) in a temporary directory, once per
    process: DVC writes its lock and state below ``.dvc/tmp`` in every command, and the image's files may be
    read-only. The copy goes when the process ends."""
    where = Path(tempfile.mkdtemp(prefix="eegcache-project-"))
    atexit.register(shutil.rmtree, where, ignore_errors=True)
    return Path(shutil.copytree(root, where / "project", symlinks=True))


def _spent(step: str, started: float, cpu: float, memory_mib: int, gpu: str | None = None) -> dict[str, Any]:
    return asdict(modal_settings.Spent(step, round(time.perf_counter() - started, 3), cpu, memory_mib, gpu))


def _no_build(cfg: config.Config) -> config.Config:
    """ConfigError for ``cache.allow_build=true``: prepare and train have no raw data and must not keep a GPU waiting."""
    if cfg.cache.allow_build:
        raise ConfigError(
            "cache.allow_build=true: prepare and train never build (no raw data mount; the GPU would "
            "wait for hours). Build on CPUs with `modal run deploy/modal/app.py::build_cache` (it "
            "installs the version on the Volume and prints its hash), then `modal run "
            "deploy/modal/app.py::train --version <hash>`"
        )
    return cfg


def _offline(overrides: list[str]) -> list[str]:
    """The caller's overrides with the cache preset replaced by ``offline`` and the fast validation: the GPU reads
    the Volume only and re-hashes nothing (``prepare`` validated the version on CPUs, deeply if asked)."""
    kept = [
        o for o in overrides if o.split("=", 1)[0].lstrip("+~") not in ("cache", "cache.validation", "cache.sources")
    ]
    return [*kept, "cache=offline", "cache.validation=fast"]


@app.function(
    image=image,
    cpu=SETTINGS.prepare_cpu,
    memory=SETTINGS.prepare_memory_mib,
    timeout=SETTINGS.prepare_timeout_s,
    retries=_retries(SETTINGS.retries),
    volumes={VOLUME_PATH: results, CACHE_MOUNT: dvc_remote},
    secrets=[aws],
)
@_no_retry
def prepare(version: str, overrides: str = "", project: str = "") -> dict[str, Any]:
    """Resolve ``version`` (``<md5>.dir``) onto the Volume with the configured preset (default: the bucket mount,
    then the DVC remote, then the Volume; never a build) and commit it. Idempotent: a retry finds what it fetched."""
    started = time.perf_counter()
    root, extra = _project(project), _split(overrides)
    cfg = _no_build(_config(root, [f"cache.version={version}", *extra]))
    _reload_volume()
    report = resolve.resolve(cfg, root, say=print, asked=identity.requested(root, extra))
    if report.bytes:
        _commit_volume()
    literal_console().print(resolve.table(report))
    spent = _spent("prepare", started, SETTINGS.prepare_cpu, SETTINGS.prepare_memory_mib)
    return {"resolve": report.as_dict(), "spent": spent}


@app.function(
    image=image,
    gpu=SETTINGS.gpu,
    timeout=SETTINGS.train_timeout_s,
    cpu=SETTINGS.train_cpu,
    memory=SETTINGS.train_memory_mib,
    retries=_retries(SETTINGS.train_retries),
    volumes={VOLUME_PATH: results},
)
@_no_retry
def train(version: str, overrides: str = "", project: str = "", run_id: str = "") -> dict[str, Any]:
    """Train on ``version`` read from the Volume only (preset ``offline``: ``prepare`` put it there; nothing is
    pulled or built while the GPU waits). The trainer ``train.entrypoint`` runs in
    ``runs/<version>/<config hash>/<run id>``: ``run_id`` continues that run (a retry after preemption resumes from
    its checkpoint directory); empty, this call's Modal input id, so a retry resumes its run."""
    started = time.perf_counter()
    root, extra = _project(project), _split(overrides)
    _reload_volume()
    cfg = _no_build(_config(root, [f"cache.version={version}", *_offline(extra)]))
    # Modal retries a failed or preempted input under the same input id: without ``run_id``, a retry resumes in its
    # run directory, from its checkpoints (a new run id outside a container); a retry that finished gets its result
    call = modal.current_input_id() or ""
    asked = identity.requested(root, extra)
    try:
        done = launch.launch(
            cfg,
            root,
            asked=asked,
            overrides=extra,
            run_id=run_id,
            commit=_commit_volume,
            call=call,
            publish_files=False,
        )
    except resolve.ResolveError as exc:
        raise resolve.ResolveError(
            f"{exc.reason}\nThe GPU reads the version from the Volume only: put it there "
            "with `prepare` (the local entrypoint runs it first)",
            exc.report,
        ) from exc
    report, result, where = done.report, done.result, done.run_dir
    print({key: value for key, value in result["metrics"].items() if key.startswith(cfg.train.eval_split)})
    spent = _spent("train", started, SETTINGS.train_cpu, SETTINGS.train_memory_mib, SETTINGS.gpu)
    return {"resolve": report.as_dict(), "metrics": result["metrics"], "run_dir": str(where), "spent": spent}


@app.function(
    image=image,
    cpu=SETTINGS.build_cpu,
    memory=SETTINGS.build_memory_mib,
    timeout=SETTINGS.build_timeout_s,
    retries=_retries(SETTINGS.retries),
    volumes={VOLUME_PATH: results, RAW_MOUNT: raw_data},
)
@_no_retry
def build_shard(share, overrides: str = "", project: str = "") -> dict[str, Any]:
    """Process one share of the recordings into the Volume's staging directory -> its ShardResult and seconds.

    ``share`` is left unannotated so that ``modal run`` parses it (as text): from ``build_cache`` it is a
    ``shards.Share`` (planned once there: no listing, no annotation parsed here); from the command line, the
    output rel paths, comma-separated (this shard then plans for itself). Idempotent: outputs are written atomically.
    """
    started = time.perf_counter()
    root = _project(project)
    _reload_volume()
    cfg = _build_config(root, _split(overrides))
    if isinstance(share, str):
        share = shards.share_of(cfg, [rel for rel in share.split(",") if rel], root)
    elif not isinstance(share, shards.Share):
        raise ConfigError(f"build_shard: share is a {type(share).__name__}; expected a Share or comma-separated rels")
    done = shards.build_share(cfg, share, root)
    _commit_volume()
    return {"result": done, "spent": _spent("shard", started, SETTINGS.build_cpu, SETTINGS.build_memory_mib)}


def _build_config(root: Path, overrides: list[str]) -> config.Config:
    cfg = _config(root, overrides)
    staging = layout.staging_dir(resolve.volume_root(cfg, root), stable_hash(identity.stage_params(cfg)))
    extra = [
        f"build.out_dir={staging / 'cache' / 'tusz'}",
        f"build.state_dir={staging / 'state'}",
        f"build.metrics_file={staging / 'cache_stats.json'}",
        "build.progress=false",
    ]
    return _config(root, [*overrides, *extra])


@app.function(
    image=image,
    cpu=SETTINGS.build_cpu,
    memory=SETTINGS.build_memory_mib,
    timeout=SETTINGS.build_cache_timeout_s,
    volumes={VOLUME_PATH: results, RAW_MOUNT: raw_data},
    secrets=[aws],
)
@_no_retry
def build_cache(overrides: str = "", project: str = "", push: bool = True) -> dict[str, Any]:
    """Plan the build once (the corpus listed, annotations parsed), run its shares on ``modal.build_containers``
    CPU containers into a staging directory on the Volume, merge the metadata, push the version to the DVC remote,
    install it on the Volume (then the staging directory goes); returns the version hash and the seconds spent."""
    started = time.perf_counter()
    root = _project(project)
    cfg = _build_config(root, _split(overrides))
    done: list[dict[str, Any]] = []

    def run_shares(works: list[shards.Share]) -> list[shards.ShardResult]:
        calls = [(work, overrides, project) for work in works]
        done.extend([build_shard.local(*call) for call in calls] if modal.is_local() else build_shard.starmap(calls))
        _reload_volume()
        return [_outcome(d, "build_shard")["result"] for d in done]

    metadata = shards.build_distributed(cfg, SETTINGS.build_containers, run_shares, root)
    out_dir = Path(cfg.build.out_dir)
    versions = layout.versions_root(resolve.volume_root(cfg, root))
    version, uploaded, installed = install.install_tree(root, out_dir, versions, push)
    staging = out_dir.parents[1]
    print(f"removing the staging directory {staging}: its content is installed as {installed}")
    shutil.rmtree(staging)  # our own intermediate; the next build starts from an empty one (merge refuses strays)
    _commit_volume()
    spent = [d["spent"] for d in done] + [_spent("build", started, SETTINGS.build_cpu, SETTINGS.build_memory_mib)]
    summary = {"version": version, "uploaded": uploaded, "files": len(metadata["files"]), "path": str(installed)}
    print(summary)
    print("\n".join(modal_settings.cost_lines([modal_settings.Spent(**s) for s in spent], SETTINGS)))
    return {**summary, "spent": spent}


@app.function(
    image=image,
    cpu=SETTINGS.verify_cpu,
    memory=SETTINGS.verify_memory_mib,
    timeout=SETTINGS.verify_timeout_s,
    retries=_retries(SETTINGS.retries),
    secrets=[aws],
)
@_no_retry
def verify(version: str, deep: bool = False, project: str = "") -> dict[str, Any]:
    """``remote-verify`` of ``version`` on the DVC remote: every object present (``deep``: re-hashed). Read-only."""
    try:
        trust.version_id(version)  # it names S3 keys: never a path out of the remote's prefix
    except trust.UnsafeName as exc:
        raise ConfigError(f"--version: {exc.reason}") from exc
    root = _project(project)
    verdict = verifying.verify_remote(root, deep=deep, version=Version("modal", version, 0, 0))
    for problem in verdict.problems:
        print(f"- {problem}")
    return {"version": version, "ok": verdict.ok, "objects": verdict.files, "problems": list(verdict.problems)}


def prepare_and_train(version: str, overrides: str = "", local: bool = False, **where: str) -> dict[str, Any]:
    """``prepare`` on CPUs, then ``train`` on the GPU as a new run; prints what each container cost (estimates at
    ``conf/modal/default.yaml``'s prices). ``local``: both bodies here (``.local()``), as ``make demo`` does."""
    call = (lambda function: function.local) if local else (lambda function: function.remote)
    prepared = _outcome(call(prepare)(version, overrides, **where), "prepare")
    run_id = runs.new_run_id()
    print(f"train started (run {run_id}): from here, `modal run --detach` keeps it going if this terminal closes")
    trained = _outcome(call(train)(version, overrides, run_id=run_id, **where), "train")
    spent = [modal_settings.Spent(**prepared["spent"]), modal_settings.Spent(**trained["spent"])]
    print("\n".join(modal_settings.cost_lines(spent, SETTINGS)))
    return {"prepare": prepared, **trained, "spent": [prepared["spent"], trained["spent"]]}


@app.local_entrypoint()
def main(rev: str = "", overrides: str = "", action: str = "train") -> None:
    """Read the cache version that ``dvc.lock`` names at ``rev`` (here, with git), then run ``action`` with it."""
    _split(overrides)  # refused here, on the launching machine, before a container starts
    version = dvc.version_at(PROJECT, rev or None).hash
    print(f"cache version {version} (dvc.lock at {rev or 'the working tree'})")
    if action == "train":
        print(prepare_and_train(version, overrides)["metrics"])
    elif action == "verify":
        print(_outcome(verify.remote(version), "verify"))
    else:
        raise SystemExit(f"--action {action!r}: expected train or verify")


if __name__ == "__main__":  # `make demo`: prepare and train run here, into a stand-in for the Volume
    import argparse

    cli = argparse.ArgumentParser(description="prepare and train, the Modal bodies run here (offline)")
    cli.add_argument("volume", nargs="?", help="the Volume's stand-in (default: a new temporary folder)")
    cli.add_argument("overrides", nargs="*", help="as --overrides, e.g. train=NAME train.args.epochs=2")
    cli.add_argument("--rev", help="git revision whose dvc.lock names the version (default: working tree)")
    given = cli.parse_args()
    stand_in = given.volume or tempfile.mkdtemp(prefix="eegcache-volume-")
    on_here = shlex.join([f"cache.volume_root={stand_in}", "cache.mount_point=", *given.overrides])
    outcome = prepare_and_train(dvc.version_at(PROJECT, given.rev).hash, on_here, local=True)
    print(json.dumps({"cache": outcome["resolve"]["path"], "metrics": outcome["metrics"]}, indent=1))
