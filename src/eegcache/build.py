"""The build stage: plan what is new, process recordings in parallel, write metadata last.

A build is incremental and restartable. Each recording's output is keyed by its inputs (EDF and
annotation content), its split, the preprocessing params and the code that shapes the output; an
output whose key and size match the previous metadata (or the journal of an interrupted build) is
reused. The old metadata is removed before the first output changes and written anew only at the
end, so a build killed at any moment leaves a cache that ``verify`` rejects and a rerun completes.
The same build split across processes or machines is in :mod:`eegcache.shards`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np

from eegcache import __version__, corpus, edf, montage, signal, store
from eegcache.config import Config, stable_hash, stage_params
from eegcache.errors import AnnotationError, CorpusError, EegcacheError, RecordingError
from eegcache.hashstate import HashState, stamped_md5
from eegcache.report import BuildProgress

log = logging.getLogger(__name__)

# Modules whose code shapes a cache file's bytes: a change to any of them changes every key.
_OUTPUT_MODULES = (corpus, edf, montage, signal, store)
_OUTPUT_LIBRARIES = ("numpy", "scipy", "edfio")
_DURATION_TOLERANCE_S = 1.0  # annotation header vs EDF length (TUH writes whole 1 s records)


@dataclass(frozen=True)
class Task:
    """One recording to process; plain data so it pickles cheaply to a worker process."""

    edf: Path
    source: str  # the EDF's path relative to the raw root, for messages and ``skipped``
    rel: str  # output path relative to the cache dir, e.g. "train/aaaaaaab_s001_t000.npz"
    split: str
    patient: str
    annotation: Path
    key_parts: tuple[str, str, str]  # params hash, code digest, annotation suffix: the key minus input digests
    annotation_duration_s: float
    seizures: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class BuildSummary:
    cache_dir: Path
    metadata: dict[str, Any]
    processed: int
    reused: int
    removed: int
    seconds: float


def code_digest() -> str:
    """Digest of the output-shaping source files and library versions (part of every recording key)."""
    parts = {m.__name__: store.md5_bytes(Path(m.__file__).read_bytes()) for m in _OUTPUT_MODULES}
    parts.update({lib: importlib_metadata.version(lib) for lib in _OUTPUT_LIBRARIES})
    return stable_hash(parts)


def recording_key(key_parts: tuple[str, str, str], split: str, edf_md5: str, annotation_md5: str) -> str:
    """What one output depends on: params, code, split and the content of its two input files."""
    params_hash, code, suffix = key_parts
    return stable_hash([params_hash, code, split, edf_md5, annotation_md5, suffix])


def process(task: Task, params: dict[str, Any], out_dir: Path) -> tuple[dict[str, Any], list, list]:
    """Hash, read, preprocess and write one recording (in a worker process, so input hashing runs in parallel
    too) -> (manifest entry, stamped md5 of the EDF, stamped md5 of the annotation)."""
    edf_stamp = _stamp(task.edf, RecordingError, "cannot read the EDF file")
    annotation_stamp = _stamp(task.annotation, AnnotationError, "cannot read annotation file")
    eeg = edf.read_eeg(task.edf)
    if abs(eeg.duration_s - task.annotation_duration_s) > _DURATION_TOLERANCE_S:
        raise RecordingError(
            f"annotation says {task.annotation_duration_s:g} s but the EDF holds {eeg.duration_s:g} s", task.edf
        )
    try:
        out = signal.preprocess(eeg.electrodes, eeg.rate, eeg.n_samples, task.seizures, **params)
    except RecordingError as exc:
        raise RecordingError(exc.reason, task.edf) from exc
    rate = float(params["sample_rate"])
    n = out.eeg.shape[1]
    facts = store.RecordingFacts(rate, montage.channel_names(params["montage"]), out.zero_filled, n / rate)
    size, md5 = store.write_recording(out_dir / task.rel, out.eeg, out.labels, facts)
    seizure_samples = _runs(out.labels)
    entry = {
        "split": task.split,
        "patient": task.patient,
        "key": recording_key(task.key_parts, task.split, edf_stamp[2], annotation_stamp[2]),
        "size": size,
        "md5": md5,
        "samples": n,
        "seconds": n / rate,
        "seizure_seconds": sum(b - a for a, b in seizure_samples) / rate,
        "seizures": seizure_samples,
        "zero_filled": list(out.zero_filled),
    }
    return entry, edf_stamp, annotation_stamp


def _stamp(path: Path, error: type[EegcacheError], what: str) -> list:
    """stamped_md5 of an input; ``error`` naming it when it cannot be read (gone, a broken link, no permission)."""
    try:
        return stamped_md5(path)
    except OSError as exc:
        raise error(f"{what}: {exc.strerror or exc}", path) from exc


def _runs(mask: np.ndarray) -> list[list[int]]:
    """[start, stop) sample intervals where a 0/1 mask is 1."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.astype(np.int8), [0]))))
    return [[int(a), int(b)] for a, b in zip(edges[::2], edges[1::2])]


class Journal:
    """Append-only record of finished outputs of the build in progress (one JSON object per line)."""

    def __init__(self, out_dir: Path):
        self.path = out_dir / store.JOURNAL_NAME
        self._handle: Any = None

    def read(self) -> dict[str, dict[str, Any]]:
        entries: dict[str, dict[str, Any]] = {}
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return entries
        for line in lines:
            try:
                record = json.loads(line)
                entries[record["rel"]] = record["entry"]
            except (ValueError, KeyError, TypeError):
                continue  # a torn last line from a killed build: that output is simply redone
        return entries

    def start(self, entries: dict[str, dict[str, Any]]) -> None:
        body = "".join(json.dumps({"rel": rel, "entry": e}, sort_keys=True) + "\n" for rel, e in sorted(entries.items()))
        store.atomic_write(self.path, body.encode())
        self._handle = open(self.path, "a")  # noqa: SIM115 (closed in finish)

    def add(self, rel: str, entry: dict[str, Any]) -> None:
        self._handle.write(json.dumps({"rel": rel, "entry": entry}, sort_keys=True) + "\n")
        self._handle.flush()

    def finish(self) -> None:
        """Close (if started) and delete the journal: the metadata now records every output."""
        if self._handle is not None:
            self._handle.close()
        self.path.unlink(missing_ok=True)


def _previous_entries(out_dir: Path) -> dict[str, dict[str, Any]]:
    """Outputs of the last complete build plus those an interrupted build finished since."""
    try:
        entries = dict(store.read_metadata(out_dir)["files"])
    except (EegcacheError, KeyError, TypeError):
        entries = {}
    entries.update(Journal(out_dir).read())
    return entries


def _reusable(out_dir: Path, rel: str, previous: dict[str, dict[str, Any]]) -> bool:
    """An earlier output exists for ``rel`` with the size its entry records (its key is compared after)."""
    entry = previous.get(rel)
    if not entry:
        return False
    try:
        return (out_dir / rel).stat().st_size == entry.get("size")
    except OSError:
        return False


def remove_stale(out_dir: Path, keep: set[str]) -> int:
    """Delete our own leftovers: temp files and outputs of recordings no longer in the plan."""
    removed = 0
    if not out_dir.exists():
        return 0
    for path in sorted(out_dir.rglob("*")):
        rel = path.relative_to(out_dir).as_posix()
        ours = store.TMP_MARK in path.name or (path.suffix == store.SUFFIX and rel not in keep)
        if path.is_file() and ours:
            log.info("removing stale cache file %s", path)
            path.unlink()
            removed += 1
    return removed


def _reason(exc: EegcacheError) -> str:
    """Why a recording was skipped, without the machine's path (the ``file`` beside it names the recording relative
    to the raw root), so the metadata does not depend on where the corpus is mounted."""
    where = Path(exc.path).name if exc.path else ""
    where += f":{exc.line}" if exc.line is not None else ""
    return f"{where}: {exc.reason}" if where else exc.reason


def _annotations(assigned, on_error: str, skipped: list[dict[str, str]]) -> list[tuple[Any, str, Any]]:
    """Parse each recording's annotation; bad or missing ones fail the build or go to ``skipped``."""
    parsed = []
    for ref, split in assigned:
        try:
            if ref.annotation is None:
                raise CorpusError("no annotation file (.csv_bi or .csv) beside the EDF", ref.edf)
            parsed.append((ref, split, corpus.parse_annotation(ref.annotation)))
        except (AnnotationError, CorpusError) as exc:
            if on_error == "fail":
                raise
            skipped.append({"file": ref.relpath, "reason": _reason(exc)})
    return parsed


@dataclass(frozen=True)
class Plan:
    """Everything a build of the corpus would do, decided from file names and annotations alone (no EDF is
    opened, nothing is hashed or written): one task per recording with a usable annotation."""

    raw_dir: Path
    out_dir: Path
    refs: list[corpus.RecordingRef]
    excluded: list[tuple[corpus.RecordingRef, str]]
    skipped: list[dict[str, str]]  # recordings whose annotation is bad or missing (build.on_error=skip)
    params: dict[str, Any]
    params_hash: str
    code: str
    tasks: list[Task]  # sorted by the EDF's relpath

    def inputs(self) -> list[Path]:
        """Every input file of the corpus: each EDF and the annotation beside it."""
        return [r.edf for r in self.refs] + [r.annotation for r in self.refs if r.annotation is not None]


def make_plan(config: Config, base_dir: Path) -> Plan:
    """Discover, split and parse annotations; fails on a bad corpus (or a bad annotation with on_error=fail)."""
    raw_dir = base_dir / config.data.raw_dir
    refs = corpus.discover(raw_dir)
    assigned, excluded = corpus.assign_splits(
        refs, config.data.split_policy, config.data.dev_ratio, config.data.split_seed
    )
    skipped: list[dict[str, str]] = []
    parsed = _annotations(assigned, config.build.on_error, skipped)
    params = stage_params(config)
    params_hash = stable_hash(params)
    code = code_digest()
    tasks = [
        Task(ref.edf, ref.relpath, f"{split}/{ref.bname}{store.SUFFIX}", split, ref.patient, ref.annotation,
             (params_hash, code, ref.annotation.suffix), ann.duration_s, ann.seizures)
        for ref, split, ann in parsed
    ]  # fmt: skip
    out_dir = base_dir / config.build.out_dir
    return Plan(raw_dir, out_dir, refs, excluded, skipped, params, params_hash, code, tasks)


def run_build(config: Config, base_dir: Path = Path()) -> BuildSummary:
    """Build (or bring up to date) the cache described by ``config``; paths are relative to ``base_dir``."""
    started = time.perf_counter()
    plan = make_plan(config, base_dir)
    out_dir = plan.out_dir
    state = HashState(base_dir / config.build.state_dir)
    previous = _previous_entries(out_dir)
    # Inputs are hashed here only where an earlier output could be reused; new work hashes them in its worker.
    candidates = [t for t in plan.tasks if _reusable(out_dir, t.rel, previous)]
    digests = state.md5_many([p for t in candidates for p in (t.edf, t.annotation)])
    tasks, reused = [], {}
    for task in plan.tasks:
        if task.edf in digests:
            key = recording_key(task.key_parts, task.split, digests[task.edf], digests[task.annotation])
            if key == previous[task.rel]["key"]:
                reused[task.rel] = previous[task.rel]
                continue
        tasks.append(task)

    journal = Journal(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    journal.start(reused)
    (out_dir / store.METADATA_NAME).unlink(missing_ok=True)
    removed = remove_stale(out_dir, set(reused) | {t.rel for t in tasks})

    def finished(task: Task, entry: dict[str, Any], edf_stamp: list, annotation_stamp: list) -> None:
        journal.add(task.rel, entry)
        state.record(task.edf, edf_stamp)
        state.record(task.annotation, annotation_stamp)

    skipped = list(plan.skipped)
    done = dict(reused)
    done.update(run_tasks(tasks, plan.params["preprocess"], out_dir, config, skipped, finished))

    digests = state.md5_many(plan.inputs())  # only skipped and excluded recordings are still unhashed here
    state.save()
    metadata = publish(config, base_dir, plan, digests, done, skipped, journal)
    return BuildSummary(out_dir, metadata, len(tasks), len(reused), removed, time.perf_counter() - started)


def run_tasks(tasks, params, out_dir, config, skipped, finished) -> dict[str, dict[str, Any]]:
    """Process ``tasks`` in worker processes -> {rel: entry}; ``finished(task, entry, edf_stamp, annotation_stamp)``
    is called in this process as each output lands; failures raise or, with on_error=skip, go to ``skipped``."""
    done: dict[str, dict[str, Any]] = {}
    workers = config.build.workers or os.cpu_count() or 1
    hours = sum(t.annotation_duration_s for t in tasks) / 3600
    with BuildProgress(len(tasks), hours, enabled=config.build.progress) as progress:
        if not tasks:
            return done
        with ProcessPoolExecutor(max_workers=min(workers, len(tasks))) as pool:
            # Longest recordings first, so no worker is left with a long one at the end while the others idle.
            ordered = sorted(tasks, key=lambda t: (-t.annotation_duration_s, t.rel))
            pending: dict[Future, Task] = {pool.submit(process, t, params, out_dir): t for t in ordered}
            try:
                while pending:
                    finished_now, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished_now:
                        task = pending.pop(future)
                        try:
                            entry, edf_stamp, annotation_stamp = future.result()
                        except EegcacheError as exc:
                            if config.build.on_error == "fail":
                                raise
                            skipped.append({"file": task.source, "reason": _reason(exc)})
                            # an earlier build's output of this recording must not outlive it (verify would
                            # find a file the metadata does not list)
                            (out_dir / task.rel).unlink(missing_ok=True)
                        else:
                            done[task.rel] = entry
                            finished(task, entry, edf_stamp, annotation_stamp)
                        progress.advance(task.annotation_duration_s / 3600)
            except BaseException:
                for future in pending:
                    future.cancel()
                raise
    return done


def publish(config, base_dir, plan, digests, done, skipped, journal) -> dict[str, Any]:
    """Write the metadata (last: it marks the cache complete), drop the journal, write the metrics."""
    metadata = _metadata(config, plan, digests, done, skipped)
    store.write_metadata(plan.out_dir, metadata)
    journal.finish()
    _write_metrics(base_dir / config.build.metrics_file, metadata)
    return metadata


def _metadata(config, plan, digests, done, skipped) -> dict[str, Any]:
    splits: dict[str, dict[str, Any]] = {}
    for rel, entry in sorted(done.items()):
        s = splits.setdefault(entry["split"], {"files": 0, "patients": set(), "seconds": 0.0,
                                                "seizure_seconds": 0.0, "bytes": 0})  # fmt: skip
        s["files"] += 1
        s["patients"].add(entry["patient"])
        s["seconds"] += entry["seconds"]
        s["seizure_seconds"] += entry["seizure_seconds"]
        s["bytes"] += entry["size"]
    for s in splits.values():
        s["patients"] = len(s["patients"])
        s["seconds"] = round(s["seconds"], 3)
        s["seizure_seconds"] = round(s["seizure_seconds"], 3)
    raw = [[r.relpath, digests[r.edf], digests.get(r.annotation) if r.annotation else None] for r in plan.refs]
    return {
        "schema_version": store.SCHEMA_VERSION,
        "package_version": __version__,
        "split_policy": config.data.split_policy,
        "params": plan.params,
        "params_hash": plan.params_hash,
        "code_digest": plan.code,
        "raw_digest": stable_hash(raw),
        "raw_recordings": len(plan.refs),
        "sample_rate": float(config.preprocess.sample_rate),
        "channels": list(montage.channel_names(config.preprocess.montage)),
        "dtype": config.preprocess.dtype,
        "splits": splits,
        "skipped": sorted(skipped, key=lambda s: s["file"]),
        "excluded": [{"file": r.relpath, "reason": why} for r, why in plan.excluded],
        "files": dict(sorted(done.items())),
    }


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
