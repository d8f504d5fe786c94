"""The build stage: plan what is new, run the recordings in parallel, publish the metadata last.

A build is incremental and restartable. Each recording's output is keyed by its inputs (EDF and
annotation content), its split, the preprocessing params and the code that shapes the output
(:mod:`eegcache.core`); an output whose key and size match the previous metadata (or the journal of an
interrupted build) is reused. The old metadata is removed before the first output changes and written
anew only at the end, so a build killed at any moment leaves a cache that ``verify`` rejects and a rerun
completes. It holds out_dir's lock and touches only files it wrote (:mod:`eegcache.outdir`). The steps
pass typed values: :func:`make_plan` -> :class:`Plan`, :func:`run_tasks` -> :class:`Outcome`,
:func:`publish` -> the metadata. The same build split across processes or machines is in
:mod:`eegcache.shards`, which reuses them.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eegcache import __version__
from eegcache.config import BuildConfig, Config, stage_params
from eegcache.core import corpus, store
from eegcache.core.identity import Stamp, stable_hash
from eegcache.core.process import (
    Output, Task, cache_metadata, code_digest, make_task, process, recording_key, skipped_entry,
)
from eegcache.errors import AnnotationError, CacheError, CorpusError, EegcacheError
from eegcache.hashstate import HashState
from eegcache.outdir import Journal, check_contents, check_paths, disk_error, lock, owned, remove_stale, writing
from eegcache.report import BuildProgress

log = logging.getLogger(__name__)

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


@dataclass(frozen=True)
class Plan:
    """Everything a build of the corpus would do, decided from file names and annotations alone (no EDF is
    opened, nothing is hashed or written): one task per recording with a usable annotation."""

    raw_dir: Path
    out_dir: Path
    refs: list[corpus.RecordingRef]
    excluded: list[tuple[corpus.RecordingRef, str]]
    skipped: list[dict[str, str]]  # EDFs discovery refused or set aside, recordings whose annotation is bad or missing
    params: dict[str, Any]  # the stage params (config.stage_params): what the cache depends on
    params_hash: str
    code: str
    tasks: list[Task]  # sorted by the EDF's relpath
    unsearched: list[dict[str, str]] = dataclasses.field(default_factory=list)  # {"folder", "reason"}: not entered

    def inputs(self) -> list[Path]:
        """Every input file of the corpus's recordings: each EDF discovery accepted and the annotation beside it (the
        files it refused or set aside are in ``skipped`` only, never opened)."""
        return [r.edf for r in self.refs] + [r.annotation for r in self.refs if r.annotation is not None]


@dataclass(frozen=True)
class Outcome:
    """What running tasks produced; plain data."""

    done: dict[str, dict[str, Any]]  # output rel path -> manifest entry (as ``process`` returns)
    skipped: tuple[dict[str, str], ...] = ()  # {"file", "reason"} of recordings that failed with on_error=skip
    stamps: dict[Path, Stamp] = dataclasses.field(default_factory=dict)  # each input a worker read -> its stamp


@dataclass(frozen=True)
class BuildSummary:
    cache_dir: Path
    metadata: dict[str, Any]
    processed: int
    reused: int
    removed: int
    seconds: float


def make_plan(config: Config, base_dir: Path) -> Plan:
    """Discover, split and parse annotations. Fails on a bad corpus (:mod:`eegcache.core.discover`: a root that is
    no folder or cannot be read, no EDF; a patient in two splits), on the first problem of one recording or folder
    with on_error=fail (a refused EDF, a bad or missing annotation, a folder that cannot be read; with skip they are
    listed in ``skipped``, the folders in ``unsearched``), when no recording is left to build (nothing written), or
    on an out_dir that is the raw data's or holds the state or metrics (outdir.check_paths)."""
    check_paths(config, base_dir)
    raw_dir = base_dir / config.data.raw_dir
    found = corpus.survey(raw_dir, config.data.prefer_montage_folders)
    if (found.unreadable or found.problems) and config.build.on_error == "fail":
        raise [*found.unreadable, *found.problems][0].error
    not_searched = sorted([*found.unsearched, *((p.relpath, p.error.reason) for p in found.unreadable)])
    for folder, reason in not_searched:
        log.warning("%s: %s (no recording in it is built)", raw_dir / folder, reason)
    assigned, excluded = corpus.assign_splits(
        found.refs, config.data.split_policy, config.data.dev_ratio, config.data.split_seed
    )
    parsed, skipped = _annotations(assigned, config.build.on_error)
    skipped = [*(skipped_entry(p.relpath, p.error) for p in [*found.superseded, *found.problems]), *skipped]
    params = stage_params(config)
    params_hash = stable_hash(params)
    code = code_digest()
    # a recording's bytes depend on the preprocess params alone (the split and the inputs are keyed beside them);
    # on_error and prefer_montage_folders choose which recordings a cache holds, so switching them reuses the rest
    shaping = stable_hash(params["preprocess"])
    tasks = [make_task(ref, split, annotation, shaping, code) for ref, split, annotation in parsed]
    if not tasks:  # fail before out_dir is touched (an earlier cache there stays as it was); no metadata lists why
        for entry in skipped:
            log.warning("skipped %s: %s", entry["file"], entry["reason"])
        raise CorpusError(_nothing_built(skipped, len(excluded), "nothing was written"), raw_dir)
    unsearched = [{"folder": folder, "reason": reason} for folder, reason in not_searched]
    return Plan(raw_dir, base_dir / config.build.out_dir, found.refs, excluded, skipped, params, params_hash, code,
                tasks, unsearched)  # fmt: skip


def _nothing_built(skipped: Sequence[dict[str, str]], excluded: int, then: str) -> str:
    """Why a build that would hold no recording fails: the counts and the first reasons."""
    first = "; ".join(f"{s['file']} ({s['reason']})" for s in sorted(skipped, key=lambda s: s["file"])[:3])
    return (f"no recording was built: {len(skipped)} skipped, {excluded} excluded by the split policy; a cache "
            f"without recordings is no cache, {then}" + (f"; first skipped: {first}" if first else ""))


def _annotations(
    assigned: list[tuple[corpus.RecordingRef, str]], on_error: str
) -> tuple[list[tuple[corpus.RecordingRef, str, corpus.Annotation]], list[dict[str, str]]]:
    """Parse each recording's annotation -> ((ref, split, annotation) of the good ones, skipped entries of the bad
    or missing ones); with on_error=fail a bad or missing one raises instead."""
    parsed, skipped = [], []
    for ref, split in assigned:
        try:
            if ref.annotation is None:
                raise CorpusError("no annotation file (.csv_bi or .csv) beside the EDF", ref.edf)
            parsed.append((ref, split, corpus.parse_annotation(ref.annotation)))
        except (AnnotationError, CorpusError) as exc:
            if on_error == "fail":
                raise
            skipped.append(skipped_entry(ref.relpath, exc))
    return parsed, skipped


def run_build(config: Config, base_dir: Path = Path()) -> BuildSummary:
    """Build (or bring up to date) the cache described by ``config``; paths are relative to ``base_dir``.

    Holds out_dir's build lock throughout (a concurrent build fails at once, naming this one) and touches only
    the files it wrote (:mod:`eegcache.outdir`): an out_dir holding anything else is refused, nothing deleted."""
    started = time.perf_counter()
    plan = make_plan(config, base_dir)
    state = HashState(base_dir / config.build.state_dir)
    planned = {t.rel for t in plan.tasks}
    with lock(plan.out_dir):
        ours = owned(plan.out_dir)
        check_contents(plan.out_dir, ours, planned)
        reused, tasks = _reusable(plan, state)
        with writing(plan.out_dir, "create"):
            plan.out_dir.mkdir(parents=True, exist_ok=True)
        # claims first: whatever this build leaves if it is killed stays its own (and the old outputs it will
        # delete or replace stay listed once the old metadata is gone)
        with Journal(plan.out_dir, reused, ours | planned) as journal:
            with writing(plan.out_dir / store.METADATA_NAME, "remove"):
                (plan.out_dir / store.METADATA_NAME).unlink(missing_ok=True)
            removed = remove_stale(plan.out_dir, ours, planned)
            outcome = run_tasks(plan, tasks, config.build, journal)
        for path, stamp in outcome.stamps.items():
            state.record(path, stamp)
        outcome = dataclasses.replace(outcome, done=reused | outcome.done)
        metadata = publish(plan, outcome, input_digests(plan, state), base_dir / config.build.metrics_file)
    return BuildSummary(plan.out_dir, metadata, len(tasks), len(reused), removed, time.perf_counter() - started)


def _reusable(plan: Plan, state: HashState) -> tuple[dict[str, dict[str, Any]], list[Task]]:
    """-> (entries of earlier outputs whose key still matches, by rel; the tasks to run). Inputs are hashed here
    only where an earlier output could be reused; new work hashes them in its worker."""
    previous = _previous_entries(plan.out_dir)
    candidates = [t for t in plan.tasks if _same_size(plan.out_dir, t.rel, previous)]
    digests = state.md5_many([p for t in candidates for p in (t.edf, t.annotation)])
    reused, tasks = {}, []
    for task in plan.tasks:
        if task.edf in digests:
            key = recording_key(task.key_parts, task.split, digests[task.edf], digests[task.annotation])
            if key == previous[task.rel].get("key"):
                reused[task.rel] = previous[task.rel]
                continue
        tasks.append(task)
    return reused, tasks


def _previous_entries(out_dir: Path) -> dict[str, dict[str, Any]]:
    """Outputs of the last complete build plus those an interrupted build finished since (entries that are not
    JSON objects are not reused)."""
    try:
        entries = dict(store.read_metadata(out_dir)["files"])
    except (EegcacheError, KeyError, TypeError, ValueError):
        entries = {}
    entries.update(Journal.read(out_dir))
    return {rel: entry for rel, entry in entries.items() if isinstance(entry, dict)}


def _same_size(out_dir: Path, rel: str, previous: dict[str, dict[str, Any]]) -> bool:
    """An earlier output exists for ``rel`` with the size its entry records (its key is compared after)."""
    entry = previous.get(rel)
    if not entry:
        return False
    try:
        return (out_dir / rel).stat().st_size == entry.get("size")
    except OSError:
        return False


def available_cpus(cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """CPUs this process may use: its affinity mask, lowered by the container's CPU quota where one is set (cgroup v2
    ``cpu.max``: quota and period in µs, e.g. ``200000 100000`` = 2 CPUs)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = cpu_max.read_text().split()
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass  # no cgroup v2 quota readable here: the affinity mask is the limit
    return cpus


def worker_count(requested: int, recordings: int) -> int:
    """Worker processes for ``recordings``: ``requested`` (``build.workers``; 0 = one per CPU), at most one per
    available CPU and per recording. Each worker holds one recording (≤ 4 × its EDF's size + 300 MB), so processes
    beyond the CPUs would add memory and no speed: a larger request is capped, with a warning."""
    cpus = available_cpus()
    if requested > cpus:
        log.warning("build.workers=%d but %d CPUs are available: running %d worker processes", requested, cpus, cpus)
    return max(1, min(requested or cpus, cpus, recordings))


def run_tasks(plan: Plan, tasks: Sequence[Task], options: BuildConfig, journal: Journal | None = None) -> Outcome:
    """Process ``tasks`` (of ``plan``) into ``plan.out_dir`` in ``options.workers`` worker processes, each output
    added to ``journal`` as it lands; a failure raises or, with ``options.on_error`` = skip, goes to
    ``Outcome.skipped`` (and any earlier output of that recording is deleted)."""
    done: dict[str, dict[str, Any]] = {}
    skipped: list[dict[str, str]] = []
    stamps: dict[Path, Stamp] = {}
    workers = worker_count(options.workers, len(tasks))
    hours = sum(t.annotation_duration_s for t in tasks) / 3600
    with BuildProgress(len(tasks), hours, enabled=options.progress) as progress:
        if not tasks:
            return Outcome(done)
        with ProcessPoolExecutor(max_workers=workers) as pool:
            # Longest recordings first, so no worker is left with a long one at the end while the others idle.
            ordered = sorted(tasks, key=lambda t: (-t.annotation_duration_s, t.rel))
            params = plan.params["preprocess"]
            pending: dict[Future, Task] = {pool.submit(process, t, params, plan.out_dir): t for t in ordered}
            try:
                while pending:
                    finished_now, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished_now:
                        task = pending.pop(future)
                        try:
                            output: Output = future.result()
                        except OSError as exc:  # the disk, not the recording: never skipped
                            raise disk_error(plan.out_dir / task.rel, exc) from exc
                        except BrokenProcessPool as exc:
                            raise CacheError("a worker process died building this file (killed? out of memory?); "
                                             "rerun: outputs already written are reused", plan.out_dir / task.rel) from exc
                        except EegcacheError as exc:
                            if options.on_error == "fail":
                                raise
                            skipped.append(skipped_entry(task.source, exc))
                            # an earlier build's output of this recording must not outlive it (verify would
                            # find a file the metadata does not list)
                            (plan.out_dir / task.rel).unlink(missing_ok=True)
                        else:
                            done[task.rel] = output.entry
                            stamps.update({task.edf: output.edf, task.annotation: output.annotation})
                            if journal is not None:
                                journal.add(task.rel, output.entry)
                        progress.advance(task.annotation_duration_s / 3600)
            except BaseException:
                for future in pending:
                    future.cancel()
                raise
    return Outcome(done, tuple(skipped), stamps)


def input_digests(plan: Plan, state: HashState, known: Mapping[Path, str] | None = None) -> dict[Path, str | None]:
    """md5 of every input of ``plan``: ``known`` ones as given, the others from ``state`` (hashing only new or
    changed files; None for one that cannot be read); the state is saved."""
    known = dict(known or {})
    digests = state.md5_many([path for path in plan.inputs() if path not in known])
    state.save()
    return digests | known


def publish(plan: Plan, outcome: Outcome, digests: Mapping[Path, str | None], metrics_file: Path) -> dict[str, Any]:
    """Write the metadata of ``outcome`` (last: it marks the cache complete), drop the journal of the build,
    write the metrics -> the metadata. ``digests``: md5 of every input of the plan (:func:`input_digests`).

    An outcome without any recording (every one skipped) is written too, for its ``skipped`` reasons, and then
    raises CorpusError naming the metadata: ``verify`` rejects such a cache, and the stage fails."""
    inputs = [(r.relpath, digests[r.edf], digests.get(r.annotation) if r.annotation else None)
              for r in plan.refs]
    metadata = cache_metadata(
        params=plan.params,
        code=plan.code,
        package_version=__version__,
        inputs=inputs,
        files=outcome.done,
        skipped=[*plan.skipped, *outcome.skipped],
        excluded=[{"file": r.relpath, "reason": why} for r, why in plan.excluded],
        unsearched=plan.unsearched,
    )
    with writing(plan.out_dir / store.METADATA_NAME):
        store.write_metadata(plan.out_dir, metadata)
    with writing(plan.out_dir / store.JOURNAL_NAME, "remove"):
        (plan.out_dir / store.JOURNAL_NAME).unlink(missing_ok=True)
    with writing(metrics_file):
        _write_metrics(metrics_file, metadata)
    if not metadata["files"]:
        then = "the reasons are listed under 'skipped' in this metadata, which verify rejects"
        raise CorpusError(_nothing_built(metadata["skipped"], len(plan.excluded), then),
                          plan.out_dir / store.METADATA_NAME)  # fmt: skip
    return metadata


def _write_metrics(path: Path, metadata: dict[str, Any]) -> None:
    """A small metrics file for ``dvc metrics show``: hours, seizure hours and GB per split."""
    metrics = {
        split: {
            "files": s["files"],
            "patients": s["patients"],
            "hours": round(s["seconds"] / 3600, 3),
            "seizure_hours": round(s["seizure_seconds"] / 3600, 3),
            "gigabytes": round(s["bytes"] / 1e9, 4),
        }
        for split, s in metadata["splits"].items()
    }
    metrics["skipped"] = len(metadata["skipped"])
    store.atomic_write(path, store.dump_json(metrics))
