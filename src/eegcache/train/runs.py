"""Training runs on the volume: each run in a directory of its own, the trainer named by ``train.entrypoint``.

A run writes below ``<volume>/runs/<version>/<config hash>/<run id>/`` (``version`` without ``.dir``; the config hash
covers the ``train`` section but its output file names; the run id is new per run, and a retry of one run keeps
it): ``run.json`` (version, config, overrides) when it starts, the trainer's own files, ``checkpoint/`` for its
checkpoints, and ``result.json`` (metrics, seconds) when it ends. A finished run is never written again.

The trainer (``train.entrypoint = "package.module:function"``, default :func:`eegcache.train.baseline`) is called
with keywords only::

    def trainer(*, cache_dir: Path, config: Config, run_dir: Path, checkpoint_dir: Path,
                commit: Callable[[], None]) -> Mapping[str, float | int]

``cache_dir``: the resolved, validated cache version (read it with :class:`eegcache.train.dataset.WindowDataset`);
``config``: the composed configuration (frozen dataclasses); ``run_dir``: where to write outputs; ``checkpoint_dir``:
the same directory on every attempt of the run, so a trainer that saves there resumes after a preemption; ``commit``:
call it after saving a checkpoint so the Volume persists it. Returns the metrics (JSON numbers).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import logging
import math
import numbers
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from eegcache import locks, trust
from eegcache.config import Config
from eegcache.core import store
from eegcache.core.identity import stable_hash
from eegcache.errors import ConfigError, TrainError

log = logging.getLogger(__name__)

OUTPUT_FIELDS = ("metrics_file", "roc_file", "model_file")  # where a run writes, not what it trains
Trainer = Callable[..., Mapping[str, Any]]
MOVED = {"eegcache.train:baseline": "eegcache.train.baseline:baseline"}  # the baseline's name before eegcache.train/
KEYWORDS = ("cache_dir", "config", "run_dir", "checkpoint_dir", "commit")  # what a trainer is called with
RUN_LOCK = ".run.lock"  # held while a run trains: one run id, one process at a time


def config_hash(config: Config) -> str:
    """16 hex digits of the ``train`` section without its output file names: runs that train alike share it."""
    train = {k: v for k, v in dataclasses.asdict(config.train).items() if k not in OUTPUT_FIELDS}
    train["entrypoint"] = MOVED.get(train["entrypoint"], train["entrypoint"])  # one trainer, one hash, either name
    return stable_hash(train)[:16]


def new_run_id() -> str:
    """A fresh run id, sortable by start time: ``20261130T001500Z-1a2b3c4d``."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def run_dir(volume: Path, version: str, config: Config, run_id: str) -> Path:
    """``<volume>/runs/<version>/<config hash>/<run id>``; ConfigError for a run id that is not one path part."""
    if not run_id or run_id in (".", "..") or not run_id.replace("-", "").replace("_", "").isalnum():
        raise ConfigError(f"run id {run_id!r}: expected letters, digits, '-' or '_'")
    return volume / "runs" / version.removesuffix(".dir") / config_hash(config) / run_id


def load_trainer(entrypoint: str) -> Trainer:
    """The function ``train.entrypoint`` names; ConfigError when its module does not import or it is not callable."""
    if entrypoint in MOVED:
        log.warning(
            "train.entrypoint = %s has moved to %s; the old name goes in the next release",
            entrypoint,
            MOVED[entrypoint],
        )
        entrypoint = MOVED[entrypoint]
    module_name, _, name = entrypoint.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"train.entrypoint = {entrypoint!r}: cannot import {module_name} ({exc}); on Modal, add "
            "your package with modal.local_packages or modal.pip_extra"
        ) from exc
    function = getattr(module, name, None)
    if not callable(function):
        raise ConfigError(f"train.entrypoint = {entrypoint!r}: {module_name} has no function {name}")
    try:
        inspect.signature(function).bind(**dict.fromkeys(KEYWORDS))
    except TypeError as exc:
        raise ConfigError(
            f"train.entrypoint = {entrypoint!r} does not take the trainer's keywords "
            f"{', '.join(KEYWORDS)} ({exc}); see eegcache/train/runs.py"
        ) from exc
    except ValueError:  # no signature to read (some builtins): the call will tell
        pass
    return function


def train(
    config: Config,
    cache_dir: Path,
    where: Path,
    commit: Callable[[], None] = lambda: None,
    overrides: tuple[str, ...] = (),
    call: str = "",
) -> dict[str, Any]:
    """Run the configured trainer on ``cache_dir`` in the run directory ``where`` -> the result (metrics, seconds).

    TrainError when ``where`` holds a finished run (runs are never overwritten; a retry of an unfinished one goes
    on in it, with its checkpoints), unless ``call`` (the caller's id, e.g. Modal's input id) is the one that
    started it: a retry of a call that finished before it could return gets the recorded result."""
    result_file = where / "result.json"
    if call and result_file.exists() and trust.loads_json((where / "run.json").read_bytes()).get("call") == call:
        return trust.loads_json(result_file.read_bytes())
    if result_file.exists():
        raise TrainError(
            f"run {where.name} has finished already and is never written again: start a new run (a new run id)", where
        )
    trainer = load_trainer(config.train.entrypoint)
    checkpoint = where / "checkpoint"
    checkpoint.mkdir(parents=True, exist_ok=True)
    try:
        with locks.held(where / RUN_LOCK):
            return _run(trainer, config, cache_dir, where, commit, overrides, call)
    except locks.Busy as exc:
        raise TrainError(f"run {where.name} is running already ({exc.holders}): a run id is one run", where) from exc


def _run(
    trainer: Trainer,
    config: Config,
    cache_dir: Path,
    where: Path,
    commit: Callable[[], None],
    overrides: tuple[str, ...],
    call: str,
) -> dict[str, Any]:
    """:func:`train`'s body, with the run's lock held."""
    result_file = where / "result.json"
    if result_file.exists():  # it finished while this one waited to start
        raise TrainError(f"run {where.name} has finished already and is never written again", where)
    checkpoint = where / "checkpoint"
    record = {
        "run_id": where.name,
        "version": config.cache.version,
        "config_hash": where.parent.name,
        "overrides": list(overrides),
        "config": dataclasses.asdict(config),
        "call": call,
    }
    if not (where / "run.json").exists():
        store.atomic_write(where / "run.json", store.dump_json(record))
    commit()
    started = time.perf_counter()
    try:
        returned = trainer(cache_dir=cache_dir, config=config, run_dir=where, checkpoint_dir=checkpoint, commit=commit)
    except SystemExit as exc:  # sys.exit() inside a trainer is not a finished run, whatever its code
        raise TrainError(
            f"train.entrypoint = {config.train.entrypoint!r} called sys.exit({exc.code!r}) before returning its "
            "metrics: the run is unfinished (its checkpoints kept; rerun with its --run-id to go on)",
            where,
        ) from exc
    metrics = _metrics(returned, config.train.entrypoint, where)
    result = {"metrics": metrics, "seconds": round(time.perf_counter() - started, 3), "run_dir": str(where)}
    store.atomic_write(result_file, store.dump_json(result))
    commit()
    return result


def _metrics(returned: object, entrypoint: str, where: Path) -> dict[str, int | float]:
    """The trainer's metrics as JSON numbers (numpy scalars converted); TrainError naming the entrypoint for
    anything else, before result.json is written (the run stays unfinished, its checkpoints kept)."""
    if not isinstance(returned, Mapping):
        raise TrainError(
            f"train.entrypoint = {entrypoint!r} returned a {type(returned).__name__}; expected a "
            "mapping of metric names to numbers",
            where,
        )
    bad = [
        f"{k!r}: {v!r}"
        for k, v in returned.items()
        if not isinstance(k, str) or not isinstance(v, numbers.Real) or not math.isfinite(v)
    ]  # NaN and infinity are not JSON numbers
    if bad:
        raise TrainError(
            f"train.entrypoint = {entrypoint!r} returned metrics that are not a name and a finite number: {', '.join(bad)}",
            where,
        )
    return {
        k: v if isinstance(v, bool) else int(v) if isinstance(v, numbers.Integral) else float(v)
        for k, v in returned.items()
    }
