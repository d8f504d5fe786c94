"""The build stage: plan what is new, run the recordings in parallel, publish the metadata last.

A build is incremental and restartable. Each recording's output is keyed by its inputs (EDF and
annotation content), its split, the preprocessing params and the code that shapes the output
(:mod:`eegcache.core`); an output whose key and size match the previous metadata (or the journal of an
interrupted build) is reused. The old metadata is removed before the first output changes and written
anew only at the end, so a build killed at any moment leaves a cache that ``verify`` rejects and a rerun
completes. It holds out_dir's lock and touches only files it wrote (:mod:`eegcache.builder.ownership`). The steps
pass typed values: :func:`~eegcache.builder.plan.make_plan` -> :class:`~eegcache.builder.plan.Plan`,
:func:`run_tasks` -> :class:`~eegcache.builder.plan.Outcome`, :func:`~eegcache.builder.publish.publish` -> the
metadata. The same build split across processes or machines is in :mod:`eegcache.builder.shards`, which reuses them.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eegcache.builder.hashstate import HashState
from eegcache.builder.ownership import Journal, disk_error, owning, remove_stale, writing
from eegcache.builder.plan import Outcome, Plan, make_plan
from eegcache.builder.progress import BuildProgress
from eegcache.builder.publish import input_digests, publish
from eegcache.config import BuildConfig, Config
from eegcache.core import store
from eegcache.core.identity import Stamp
from eegcache.core.process import Output, Task, process, recording_key, skipped_entry
from eegcache.errors import CacheError, EegcacheError

log = logging.getLogger(__name__)

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


@dataclass(frozen=True)
class BuildSummary:
    cache_dir: Path
    metadata: dict[str, Any]
    processed: int
    reused: int
    removed: int
    seconds: float


def run_build(config: Config, base_dir: Path = Path()) -> BuildSummary:
    """Build (or bring up to date) the cache described by ``config``; paths are relative to ``base_dir``.

    Holds out_dir's build lock throughout (a concurrent build fails at once, naming this one) and touches only
    the files it wrote (:mod:`eegcache.builder.ownership`): an out_dir holding anything else is refused, nothing deleted."""
    started = time.perf_counter()
    plan = make_plan(config, base_dir)
    state = HashState(base_dir / config.build.state_dir)
    planned = {t.rel for t in plan.tasks}
    with owning(plan.out_dir, planned) as ours:
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
                            raise CacheError(
                                "a worker process died building this file (killed? out of memory?); "
                                "rerun: outputs already written are reused",
                                plan.out_dir / task.rel,
                            ) from exc
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
