"""What a build would do, decided before anything is written: :func:`make_plan` -> :class:`Plan` (the corpus
discovered, split and its annotations parsed; one task per recording); and what running tasks produced,
:class:`Outcome`. Plain data that crosses process and container boundaries."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eegcache.builder.ownership import check_paths
from eegcache.config import Config
from eegcache.core import corpus
from eegcache.core.identity import Stamp, stable_hash
from eegcache.core.process import Task, code_digest, make_task, skipped_entry
from eegcache.errors import AnnotationError, CorpusError
from eegcache.versions.identity import stage_params

log = logging.getLogger(__name__)


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


def make_plan(config: Config, base_dir: Path) -> Plan:
    """Discover, split and parse annotations. Fails on a bad corpus (:mod:`eegcache.core.discover`: a root that is
    no folder or cannot be read, no EDF; a patient in two splits), on the first problem of one recording or folder
    with on_error=fail (a refused EDF, a bad or missing annotation, a folder that cannot be read; with skip they are
    listed in ``skipped``, the folders in ``unsearched``), when no recording is left to build (nothing written), or
    on an out_dir that is the raw data's or holds the state or metrics (outdir.check_paths)."""
    check_paths(config, base_dir)
    raw_dir = base_dir / config.data.raw_dir
    found = corpus.survey(raw_dir, config.data.prefer_montage_folders)
    _refuse_linked_folders(raw_dir, [folder for folder, _ in found.unsearched])
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
        raise CorpusError(nothing_built(skipped, len(excluded), "nothing was written"), raw_dir)
    unsearched = [{"folder": folder, "reason": reason} for folder, reason in not_searched]
    return Plan(
        raw_dir,
        base_dir / config.build.out_dir,
        found.refs,
        excluded,
        skipped,
        params,
        params_hash,
        code,
        tasks,
        unsearched,
    )


def _refuse_linked_folders(raw_dir: Path, unsearched: list[str]) -> None:
    """CorpusError naming the folders below the corpus root that are symbolic links, whatever ``on_error`` says: a
    build without them would be a cache silently short of a split. They are not read because DVC does not read
    them either: it hashes no folder behind a link inside a dependency, so `dvc repro` would never see them change.
    A link at the root itself is followed (by both): that is how a corpus is kept elsewhere (paths.data_dir)."""
    links = [folder for folder in unsearched if (raw_dir / folder).is_symlink()]
    if links:
        shown = ", ".join(f"{folder} -> {os.readlink(raw_dir / folder)}" for folder in links[:5])
        raise CorpusError(
            f"{len(links)} folder(s) below the corpus root are symbolic links ({shown}): neither the build nor DVC "
            "reads through a link below a dependency's root (DVC would not see their changes). Keep the corpus in "
            "one folder (it may be on any disk: point paths.data_dir at it in conf/local/default.yaml), or put the "
            "folder itself there (move it, or a bind mount)",
            raw_dir,
        )


def nothing_built(skipped: Sequence[dict[str, str]], excluded: int, then: str) -> str:
    """Why a build that would hold no recording fails: the counts and the first reasons."""
    first = "; ".join(f"{s['file']} ({s['reason']})" for s in sorted(skipped, key=lambda s: s["file"])[:3])
    return (
        f"no recording was built: {len(skipped)} skipped, {excluded} excluded by the split policy; a cache "
        f"without recordings is no cache, {then}" + (f"; first skipped: {first}" if first else "")
    )


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


@dataclass(frozen=True)
class Outcome:
    """What running tasks produced; plain data."""

    done: dict[str, dict[str, Any]]  # output rel path -> manifest entry (as ``process`` returns)
    skipped: tuple[dict[str, str], ...] = ()  # {"file", "reason"} of recordings that failed with on_error=skip
    stamps: dict[Path, Stamp] = dataclasses.field(default_factory=dict)  # each input a worker read -> its stamp
