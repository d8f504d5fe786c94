"""A build split across processes or machines (e.g. Modal containers writing into one shared volume):
:func:`build_distributed` plans once, runs every share through the map function it is given (a local process pool,
Modal's ``starmap``) and merges; the cache is byte-identical to :func:`eegcache.builder.run.run_build`'s. A sharded
build is not incremental: every shard processes all of its recordings.

Planned once: :func:`split_plan` turns one :class:`~eegcache.builder.plan.Plan` (the corpus listed, every annotation
parsed) into :class:`Share` values, plain data that :func:`build_share` runs without listing or parsing again;
:func:`share_of` makes one for a shard that only knows its rel paths (it plans for itself).
"""

from __future__ import annotations

import functools
import heapq
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eegcache.builder.hashstate import HashState
from eegcache.builder.ownership import Journal, check_paths, owning, remove_stale, writing
from eegcache.builder.plan import Outcome, Plan, make_plan
from eegcache.builder.publish import input_digests, publish
from eegcache.builder.run import run_tasks
from eegcache.config import Config
from eegcache.core import store
from eegcache.core.identity import stable_hash
from eegcache.core.process import Task, code_digest, recording_key
from eegcache.errors import CacheError, ConfigError, CorpusError
from eegcache.versions.identity import stage_params


@dataclass(frozen=True)
class ShardResult:
    """What one shard built; plain data, pickled across process and container boundaries."""

    entries: dict[str, dict[str, Any]]  # output rel path -> manifest entry (as ``process`` returns)
    digests: dict[str, str]  # input path relative to the raw root (EDF and annotation) -> md5
    skipped: list[dict[str, str]]  # {"file", "reason"} of recordings that failed with build.on_error=skip


@dataclass(frozen=True)
class Share:
    """One shard's share of a plan (:func:`split_plan`); plain data, pickled to the shard's process or container."""

    tasks: tuple[Task, ...]  # sorted by rel
    planned: frozenset[str]  # every output rel of the build: the other shards' outputs are expected in out_dir
    params_hash: str  # of the stage params and code the plan was made with; build_share refuses others
    code: str

    @property
    def rels(self) -> list[str]:
        """The output rel paths (``"train/aaaaaaab_s001_t000.npz"``) of the share's recordings, sorted."""
        return [t.rel for t in self.tasks]


def split_plan(plan: Plan, shards: int) -> list[Share]:
    """``plan``'s tasks in at most ``shards`` non-empty shares balanced by annotated duration: longest recording
    first onto the share with the fewest seconds so far (ties: rel, then share index). Deterministic."""
    if isinstance(shards, bool) or not isinstance(shards, int) or shards < 1:
        raise ConfigError(f"shards = {shards!r}; expected a positive number of shards")
    loads = [(0.0, i) for i in range(min(shards, len(plan.tasks)))]  # a heap of (seconds assigned, share index)
    lists: list[list[Task]] = [[] for _ in loads]
    for task in sorted(plan.tasks, key=lambda t: (-t.annotation_duration_s, t.rel)):
        seconds, i = heapq.heappop(loads)
        lists[i].append(task)
        heapq.heappush(loads, (seconds + task.annotation_duration_s, i))
    planned = frozenset(t.rel for t in plan.tasks)  # once: every share carries the same set
    return [_share(plan, tasks, planned) for tasks in lists]


def _share(plan: Plan, tasks: Sequence[Task], planned: frozenset[str]) -> Share:
    return Share(tuple(sorted(tasks, key=lambda t: t.rel)), planned, plan.params_hash, plan.code)


def share_of(config: Config, rels: Sequence[str], base_dir: Path = Path()) -> Share:
    """The share of exactly the recordings ``rels`` (output rel paths, e.g. from the command line), planned here:
    the corpus listed and its annotations parsed as :func:`~eegcache.builder.plan.make_plan` does. Raises as a build
    does on a bad corpus, and CorpusError naming any rel the build would not process."""
    plan = make_plan(config, base_dir)
    wanted, planned = set(rels), frozenset(t.rel for t in plan.tasks)
    unknown = sorted(wanted - planned)
    if unknown:
        raise CorpusError(
            f"not recordings of this build (not in the corpus, excluded by the split policy, or skipped by discovery "
            f"or for a bad annotation): {', '.join(unknown)}",
            plan.raw_dir,
        )
    return _share(plan, [t for t in plan.tasks if t.rel in wanted], planned)


def build_share(config: Config, work: Share, base_dir: Path = Path()) -> ShardResult:
    """Process exactly the recordings of ``work`` (from :func:`split_plan` or :func:`share_of`; nothing is listed
    or parsed again) into ``build.out_dir`` with ``build.workers`` processes, as run_build would.

    Safe beside other shards writing their own outputs into the same out_dir: it shares out_dir's build lock with
    them (a run_build or merge_shards holds it exclusively), writes its outputs atomically and no hash state, and
    removes only a stale metadata file, after listing the outputs that metadata owned in the journal's claims
    (the cache stays incomplete until :func:`merge_shards`, which removes those no shard rewrote). CacheError,
    before anything is written, when ``config`` has other stage params or this code another digest than the
    plan's, a task's EDF lies outside ``data.raw_dir``, or out_dir holds files of others."""
    check_paths(config, base_dir)
    params = stage_params(config)
    raw_dir, out_dir = base_dir / config.data.raw_dir, base_dir / config.build.out_dir
    if (work.params_hash, work.code) != (stable_hash(params), code_digest()):
        raise CacheError(
            "this shard's work was planned with other stage params or code than the shard runs "
            "(plan and shards must use one configuration and one image)",
            out_dir,
        )
    outside = [t.source for t in work.tasks if not t.edf.is_relative_to(raw_dir) or t.rel not in work.planned]
    if outside:
        raise CacheError(f"tasks outside data.raw_dir {raw_dir} or the plan: {_listed(outside)}", out_dir)
    plan = Plan(raw_dir, out_dir, [], [], [], params, work.params_hash, work.code, list(work.tasks))
    with owning(plan.out_dir, set(work.planned), shared=True) as ours:
        metadata = plan.out_dir / store.METADATA_NAME
        if metadata.exists():  # no metadata may describe changing outputs; the journal keeps what it owned
            with Journal(plan.out_dir, {}, ours), writing(metadata, "remove"):
                metadata.unlink(missing_ok=True)
        outcome = run_tasks(plan, plan.tasks, config.build)
    digests = {_raw_rel(plan, path): stamp.md5 for path, stamp in outcome.stamps.items()}
    return ShardResult(
        dict(sorted(outcome.done.items())),
        dict(sorted(digests.items())),
        sorted(outcome.skipped, key=lambda s: s["file"]),
    )


def build_distributed(
    config: Config, shards: int, run_shares: Callable[[list[Share]], Iterable[ShardResult]], base_dir: Path = Path()
) -> dict[str, Any]:
    """The whole sharded build -> the metadata: the corpus planned once (:func:`~eegcache.builder.plan.make_plan`),
    split into at most ``shards`` shares (:func:`split_plan`), the shares run by ``run_shares`` (each share through
    :func:`build_share`, wherever it runs), the results merged (:func:`merge_shards`)."""
    plan = make_plan(config, base_dir)
    results = list(run_shares(split_plan(plan, shards)))
    return merge_shards(config, results, base_dir, plan)


def merge_shards(
    config: Config, results: Sequence[ShardResult], base_dir: Path = Path(), plan: Plan | None = None
) -> dict[str, Any]:
    """Write the metadata and metrics for the union of the shards' results, as run_build would -> the metadata.

    Raises CacheError (writing nothing) when a planned recording is in no result or in two, a result holds a
    recording this build does not process or an entry built with other params, code or inputs, an output is
    missing or has another size than recorded, or out_dir holds outputs no shard wrote and no earlier build owned,
    or any other file of someone else's. Hashes the inputs the shards did not (skipped and excluded recordings).
    Holds out_dir's build lock exclusively (so no shard is still writing) and removes only our own leftovers:
    outputs an earlier build owned that no shard rewrote, temp files of killed writes, the journal. ``plan``: the
    one the shards' work was split from (by default, planned again here).
    """
    plan = plan or make_plan(config, base_dir)
    outcome, hashed = _gather(plan, results)
    check = functools.partial(_check_outputs, plan.out_dir, outcome.done)
    with owning(plan.out_dir, set(outcome.done), first=check) as ours:
        remove_stale(plan.out_dir, ours, set(outcome.done))
        known = {path: hashed[rel] for path in plan.inputs() if (rel := _raw_rel(plan, path)) in hashed}
        digests = input_digests(plan, HashState(base_dir / config.build.state_dir), known)
        return publish(plan, outcome, digests, base_dir / config.build.metrics_file)


def _raw_rel(plan: Plan, path: Path) -> str:
    return path.relative_to(plan.raw_dir).as_posix()


def _gather(plan: Plan, results: Sequence[ShardResult]) -> tuple[Outcome, dict[str, str]]:
    """Union of the results -> (their outcome, input digests by path relative to the raw root); raises
    CacheError unless every planned recording is in exactly one result and every entry has this plan's key."""
    by_rel = {t.rel: t for t in plan.tasks}
    rel_of = {t.source: t.rel for t in plan.tasks}
    done: dict[str, dict[str, Any]] = {}
    skipped: list[dict[str, str]] = []
    hashed: dict[str, str] = {}
    held_by: dict[str, int] = {}  # rel -> index of the result holding it
    problems: list[str] = []
    for i, result in enumerate(results):
        hashed.update(result.digests)
        skipped.extend(result.skipped)
        done.update(result.entries)
        for rel in [*result.entries, *(rel_of.get(s["file"], s["file"]) for s in result.skipped)]:
            if rel not in by_rel:
                problems.append(f"result {i} holds {rel}, which this build does not process")
            elif rel in held_by:
                problems.append(f"{rel} is in results {held_by[rel]} and {i}")
            else:
                held_by[rel] = i
        for rel, entry in result.entries.items():
            if (task := by_rel.get(rel)) is None:
                continue  # reported above
            md5s = [result.digests.get(task.source), result.digests.get(_raw_rel(plan, task.annotation))]
            if None in md5s or entry.get("key") != recording_key(task.key_parts, task.split, *md5s):
                problems.append(f"{rel} in result {i} was built with other params, code or inputs than this build")
    missing = sorted(by_rel.keys() - held_by.keys())
    if missing:
        problems.insert(
            0,
            f"{len(missing)} planned recording(s) in no shard result (a shard missing or failed?): {_listed(missing)}",
        )
    if problems:
        raise CacheError(f"cannot merge the shard results: {'; '.join(problems)}", plan.out_dir)
    return Outcome(done, tuple(skipped)), hashed


def _check_outputs(out_dir: Path, done: dict[str, dict[str, Any]], ours: set[str]) -> None:
    """Raise CacheError unless every entry's file is in ``out_dir`` with its recorded size and no other output is
    but those of an earlier build (``ours``: they are removed)."""
    problems = []
    for rel, entry in sorted(done.items()):
        try:
            size = (out_dir / rel).stat().st_size
        except FileNotFoundError:
            problems.append(f"{rel} is missing")
            continue
        if size != entry["size"]:
            problems.append(f"{rel} has {size} bytes, its shard recorded {entry['size']}")
    outputs = (p for p in out_dir.rglob(f"*{store.SUFFIX}") if store.TMP_MARK not in p.name)
    found = {p.relative_to(out_dir).as_posix() for p in outputs}
    strays = sorted(found - done.keys() - ours)
    if strays:
        problems.append(f"outputs no shard of this build wrote (from an earlier build? remove them): {_listed(strays)}")
    if problems:
        raise CacheError(f"cannot merge the shard results: {'; '.join(problems)}", out_dir)


def _listed(items: list[str], shown: int = 20) -> str:
    more = f" and {len(items) - shown} more" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more
