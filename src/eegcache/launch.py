"""One route for every trainer: the cache a run reads, its run directory, the trainer called there.

``eegcache train [overrides]`` and the Modal ``train`` body both call :func:`launch`; ``dvc repro train`` is
``eegcache train --params params.yaml``, the same route for the baseline. The cache is

- a version asked for (``cache.version`` or ``cache.rev``): resolved onto ``cache.volume_root`` from the configured
  sources (:func:`eegcache.volume.resolve.resolve`; the Modal GPU body allows the Volume only), or else
- the workspace's cache (``build.out_dir``), checked against its own metadata (names, sizes, the version hash it
  makes; ``cache.validation=deep`` also re-hashes every file).

The run goes to ``<volume_root>/runs/<version>/<config hash>/<run id>/`` (:mod:`eegcache.train.runs`, which calls
``train.entrypoint`` with ``cache_dir``, ``config``, ``run_dir``, ``checkpoint_dir`` and ``commit``). The files the
baseline wrote there under the names of ``train.metrics_file``, ``roc_file`` and ``model_file`` are then copied to
those paths (the DVC stage's outputs, tracked in git); another trainer's files stay in its run directory, whatever
their names, so no trainer can overwrite the baseline's tracked results.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eegcache import trust
from eegcache.config import Config, TrainConfig
from eegcache.core import store
from eegcache.errors import CacheError, ConfigError
from eegcache.modal_settings import refuse_modal_overrides
from eegcache.train import runs
from eegcache.versions import verify
from eegcache.volume import resolve

PUBLISHED = ("metrics_file", "roc_file", "model_file")  # train.* paths the baseline's run files are copied to
BASELINE = TrainConfig.entrypoint  # the one trainer whose files are published (the DVC stage's outputs)


@dataclass(frozen=True)
class Launched:
    """A finished run: what the trainer returned, where it ran, on which cache."""

    result: dict[str, Any]  # metrics, seconds, run_dir (result.json)
    run_dir: Path
    cache_dir: Path
    version: str
    report: resolve.Report | None  # the resolve's report when a version was asked for
    published: tuple[Path, ...] = ()  # the train.* files copied out of the run directory


def run_cache(
    config: Config, project: Path, asked: dict[str, Any] | None = None, say: Callable[[str], None] = print
) -> tuple[Path, str, resolve.Report | None]:
    """(cache directory, version, resolve report or None) of the cache a run reads (see the module docstring)."""
    if config.cache.version or config.cache.rev:
        report = resolve.resolve(config, project, say=say, asked=asked)
        return Path(report.path or ""), str(report.version), report
    cache_dir = project / config.build.out_dir
    version = verify.version_of(cache_dir)
    verdict = verify.verify_version(cache_dir, version, deep=config.cache.validation == "deep")
    if not verdict.ok:
        raise CacheError(
            f"the workspace's cache is not whole ({'; '.join(verdict.problems[:3])}): rebuild it (`dvc repro "
            "build_cache`) or train on a version (cache.rev=<tag> or cache.version=<md5>.dir)",
            cache_dir,
        )
    return cache_dir, version, None


def launch(
    config: Config,
    project: Path = Path(),
    *,
    asked: dict[str, Any] | None = None,
    overrides: Sequence[str] = (),
    run_id: str = "",
    commit: Callable[[], None] = lambda: None,
    call: str = "",
    say: Callable[[str], None] = print,
    publish_files: bool = True,
    dvc_stage: str = "",
) -> Launched:
    """Run ``train.entrypoint`` on the run's cache in its run directory, then publish its files (module docstring).

    ``run_id``: continue that run (its checkpoints); else ``call`` (the caller's id, e.g. Modal's input id, so a
    retry resumes its run), else a new id. ``commit``: persists the run directory (the Modal Volume's commit).
    ``publish_files``: copy the run's files to the ``train.*`` paths (the Modal body's project is a throwaway copy).
    ``dvc_stage``: the DVC stage running this (``DVC_STAGE``): a stage's outputs are the baseline's files, so another
    trainer is refused there, before anything runs."""
    refuse_modal_overrides(overrides, "a run's overrides")  # recorded in run.json, yet the image is fixed already
    baseline = runs.MOVED.get(config.train.entrypoint, config.train.entrypoint) == BASELINE
    if dvc_stage and not baseline:
        raise ConfigError(
            f"train.entrypoint = {config.train.entrypoint!r} in params.yaml, but the DVC stage {dvc_stage!r} runs the "
            "baseline (its outputs are the baseline's files): run your trainer with `eegcache train train=NAME`, "
            "and `eegcache params` to compose params.yaml with the baseline again"
        )
    cache_dir, version, report = run_cache(config, project, asked, say)
    config = dataclasses.replace(config, cache=dataclasses.replace(config.cache, version=version))
    volume = resolve.volume_root(config, project)
    where = runs.run_dir(volume, version, config, run_id or call or runs.new_run_id())
    trust.folders_below(volume, where.relative_to(volume).as_posix(), "checkpoint")  # no link followed in runs/
    result = runs.train(config, cache_dir, where, commit, tuple(overrides), call)
    published = publish(config, where, project) if publish_files and baseline else ()
    return Launched(result, where, cache_dir, version, report, published)


def publish(config: Config, where: Path, project: Path) -> tuple[Path, ...]:
    """Copy the run's files named like ``train.metrics_file``/``roc_file``/``model_file`` to those paths (the
    baseline's: :func:`launch` calls it for no other trainer)."""
    copied = []
    for name in PUBLISHED:
        target = project / getattr(config.train, name)
        source = where / target.name
        if source.is_file() and not source.is_symlink():  # a few kB of JSON (the baseline's)
            store.atomic_write(target, source.read_bytes())
            copied.append(target)
    return tuple(copied)


def outcome_lines(done: Launched, config: Config) -> list[str]:
    """What ``eegcache train`` prints: the eval split's metrics (the baseline's in one sentence), the run, the files."""
    split, m = config.train.eval_split, done.result["metrics"]
    baseline = ("auroc", "sensitivity", "false_alarms_per_24h", "seizure_windows", "windows")
    if all(f"{split}_{name}" in m for name in baseline):  # the baseline's set
        lines = [
            f"{split}: AUROC {m[f'{split}_auroc']:.3f}, sensitivity {m[f'{split}_sensitivity']:.3f} and "
            f"{m[f'{split}_false_alarms_per_24h']:.1f} false alarms per 24 h at threshold {config.train.threshold:g} "
            f"({m[f'{split}_seizure_windows']} seizure of {m[f'{split}_windows']} windows)"
        ]
    else:
        shown = {k: v for k, v in m.items() if k.startswith(f"{split}_")} or m
        lines = [", ".join(f"{k} {v:g}" for k, v in shown.items()) or "the trainer returned no metrics"]
    lines.append(f"run: {done.run_dir} (cache {done.version}, {done.result['seconds']:.1f} s)")
    if done.published:
        lines.append(f"wrote {', '.join(str(p) for p in done.published)}")
    return lines
