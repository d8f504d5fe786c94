"""The last step of a build: every input hashed (:func:`input_digests`), then the metadata written, which marks the
cache complete, and the metrics (:func:`publish`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from eegcache import __version__
from eegcache.builder.hashstate import HashState
from eegcache.builder.ownership import writing
from eegcache.builder.plan import Outcome, Plan, nothing_built
from eegcache.core import store
from eegcache.core.process import cache_metadata
from eegcache.errors import CorpusError


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
    inputs = [(r.relpath, digests[r.edf], digests.get(r.annotation) if r.annotation else None) for r in plan.refs]
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
        raise CorpusError(
            nothing_built(metadata["skipped"], len(plan.excluded), then), plan.out_dir / store.METADATA_NAME
        )
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
