"""One recording in, one cache file out; and the metadata that describes the cache version.

:func:`process` hashes, reads, preprocesses and writes one recording and returns its manifest entry;
:func:`recording_key` says what that output depends on, :func:`code_digest` which code shapes it, and
:func:`cache_metadata` composes ``.cache_metadata.json`` from the entries. All of it is part of a cache
version's bytes. Deciding which recordings to process, running them in parallel and writing the metadata
last is the build's (:mod:`eegcache.build`), which passes plain values in.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np

from eegcache.core import edf, montage, signal, store
from eegcache.core.corpus import Annotation, RecordingRef
from eegcache.core.identity import Stamp, stable_hash, stamped_md5
from eegcache.errors import AnnotationError, EegcacheError, RecordingError

log = logging.getLogger(__name__)

CORE_DIR = Path(__file__).resolve().parent
# Libraries whose versions shape a cache file's bytes, beside every source file of this folder.
OUTPUT_LIBRARIES = ("numpy", "scipy", "edfio")
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
    key_parts: tuple[str, str, str]  # preprocess params hash, code digest, annotation suffix: key minus inputs
    annotation_duration_s: float
    seizures: tuple[tuple[float, float], ...]
    annotation_md5: str = ""  # of the annotation the plan parsed (the labels above); "" = not checked


@dataclass(frozen=True)
class Output:
    """What :func:`process` wrote for one task: its manifest entry and the stamps of the two inputs it read."""

    entry: dict[str, Any]
    edf: Stamp
    annotation: Stamp


def code_files() -> list[Path]:
    """Every source file of this folder (the ``core`` package), sorted: the code that shapes a cache's bytes."""
    return sorted(CORE_DIR.rglob("*.py"))


def code_digest() -> str:
    """Digest of :func:`code_files` (relative path -> content md5) and :data:`OUTPUT_LIBRARIES`' versions
    (part of every recording key and recorded in the metadata)."""
    parts = {p.relative_to(CORE_DIR).as_posix(): store.md5_bytes(p.read_bytes()) for p in code_files()}
    parts.update({lib: importlib_metadata.version(lib) for lib in OUTPUT_LIBRARIES})
    return stable_hash(parts)


def make_task(ref: RecordingRef, split: str, annotation: Annotation, params_hash: str, code: str) -> Task:
    """The task for recording ``ref`` in ``split`` with its parsed ``annotation``; the output goes to
    ``<split>/<bname>.npz`` in the cache. ``params_hash``: of the params that shape the output's bytes (the build
    passes the ``preprocess`` section's)."""
    return Task(ref.edf, ref.relpath, f"{split}/{ref.bname}{store.SUFFIX}", split, ref.patient, annotation.path,
                (params_hash, code, annotation.path.suffix), annotation.duration_s, annotation.seizures,
                annotation.md5)  # fmt: skip


def recording_key(key_parts: tuple[str, str, str], split: str, edf_md5: str, annotation_md5: str) -> str:
    """What one output depends on: preprocess params, code, split and the content of its two input files."""
    params_hash, code, suffix = key_parts
    return stable_hash([params_hash, code, split, edf_md5, annotation_md5, suffix])


def process(task: Task, params: dict[str, Any], out_dir: Path) -> Output:
    """Hash, read, preprocess (``params``: the ``preprocess`` section) and write one recording into
    ``out_dir`` (in a worker process, so input hashing runs in parallel too)."""
    edf_stamp = _stamp(task.edf, RecordingError, "cannot read the EDF file")
    annotation_stamp = _stamp(task.annotation, AnnotationError, "cannot read annotation file")
    if task.annotation_md5 and annotation_stamp.md5 != task.annotation_md5:  # the labels are the planned file's
        raise AnnotationError("changed since the build was planned (its labels were read before): build again",
                              task.annotation)  # fmt: skip
    eeg = edf.read_eeg(task.edf)
    if abs(eeg.duration_s - task.annotation_duration_s) > _DURATION_TOLERANCE_S:
        raise RecordingError(
            f"annotation says {task.annotation_duration_s:g} s but the EDF holds {eeg.duration_s:g} s", task.edf
        )
    for electrode, why in eeg.unusable.items():
        log.warning("%s: EEG channel %s left out as missing: %s", task.edf, electrode, why)
    try:
        out = signal.preprocess(eeg.electrodes, eeg.rate, eeg.n_samples, task.seizures, unusable=eeg.unusable, **params)
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
        "key": recording_key(task.key_parts, task.split, edf_stamp.md5, annotation_stamp.md5),
        "size": size,
        "md5": md5,
        "samples": n,
        "seconds": n / rate,
        "seizure_seconds": sum(b - a for a, b in seizure_samples) / rate,
        "seizures": seizure_samples,
        "zero_filled": list(out.zero_filled),
    }
    return Output(entry, edf_stamp, annotation_stamp)


def _stamp(path: Path, error: type[EegcacheError], what: str) -> Stamp:
    """stamped_md5 of an input; ``error`` naming it when it cannot be read (gone, a broken link, no permission)."""
    try:
        return stamped_md5(path)
    except OSError as exc:
        raise error(f"{what}: {exc.strerror or exc}", path) from exc


def _runs(mask: np.ndarray) -> list[list[int]]:
    """[start, stop) sample intervals where a 0/1 mask is 1."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.astype(np.int8), [0]))))
    return [[int(a), int(b)] for a, b in zip(edges[::2], edges[1::2])]


def skipped_entry(source: str, exc: EegcacheError) -> dict[str, str]:
    """The metadata's record of a recording that was not built: ``source`` (its path relative to the raw root) and
    why, without the machine's path, so the metadata does not depend on where the corpus is mounted."""
    where = Path(exc.path).name if exc.path else ""
    where += f":{exc.line}" if exc.line is not None else ""
    return {"file": source, "reason": f"{where}: {exc.reason}" if where else exc.reason}


def cache_metadata(
    *,
    params: dict[str, Any],
    code: str,
    package_version: str,
    inputs: Sequence[tuple[str, str | None, str | None]],
    files: Mapping[str, dict[str, Any]],
    skipped: Iterable[dict[str, str]],
    excluded: Iterable[dict[str, str]],
    unsearched: Iterable[dict[str, str]] = (),
) -> dict[str, Any]:
    """The content of ``.cache_metadata.json``: how the cache was made, from what, and what it holds.

    ``params``: the stage params (``data`` split settings, the ``preprocess`` section, ``build.on_error``);
    ``code``: :func:`code_digest`; ``inputs``: one (EDF relpath, EDF md5, annotation md5 or None) per recording
    of the corpus; ``files``: output rel path -> entry as :func:`process` returns; ``skipped``/``excluded``:
    {"file", "reason"} of recordings not built (:func:`skipped_entry`; the split policy's exclusions);
    ``unsearched``: {"folder", "reason"} of folders discovery did not enter (hidden, symbolic links, unreadable).
    """
    preprocess = params["preprocess"]
    return {
        "schema_version": store.SCHEMA_VERSION,
        "package_version": package_version,
        "split_policy": params["data"]["split_policy"],
        "params": params,
        "params_hash": stable_hash(params),
        "code_digest": code,
        "raw_digest": stable_hash(list(inputs)),
        "raw_recordings": len(inputs),
        "sample_rate": float(preprocess["sample_rate"]),
        "channels": list(montage.channel_names(preprocess["montage"])),
        "dtype": preprocess["dtype"],
        "splits": _split_totals(files),
        "skipped": sorted(skipped, key=lambda s: s["file"]),
        "excluded": list(excluded),
        "unsearched": sorted(unsearched, key=lambda u: u["folder"]),
        "files": dict(sorted(files.items())),
    }


def _split_totals(files: Mapping[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per split: files, patients, seconds, seizure seconds and bytes of the outputs."""
    splits: dict[str, dict[str, Any]] = {}
    for _, entry in sorted(files.items()):
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
    return splits
