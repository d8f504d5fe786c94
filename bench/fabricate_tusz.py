"""A TUSZ v2.0.3-sized corpus *layout* and cache without the signals, for figures at full scale (``bench_scale.py``).

:func:`plan_layout` draws 7,361 recordings (seeded) whose per-split counts, patients, hours and seizure hours, and
per-folder montage counts, are those of TUSZ v2.0.3 (:data:`TUSZ_V203`; ``scale`` shrinks them for tests).
:func:`write_layout` writes them in the real layout: each EDF a sparse file (discovery and planning never open one)
beside its ``.csv`` and ``.csv_bi`` in the real format (the demo generator's writers, ``eegcache.devtools.demo``).
:func:`write_cache` writes the cache a build would make of them: every ``.npz`` is a valid cache file of the real
size (``store.open_recording`` and ``numpy.load`` read it) whose EEG is zeros left as holes in a sparse file, so
~41 GB of cache takes a few hundred MB of disk; the labels, facts and metadata are what a build would record.

What is drawn and not published: the split of each split's files among its patients and sessions (lognormal
weights), durations (lognormal, scaled to the split's hours, whole seconds), which recordings hold seizures (about a
fifth, seizure time proportional to duration, scaled to the split's seizure hours), sampling rates (250/256/400/512
Hz) and which 249 files lack FZ and PZ. The published montage-folder counts add up to 7,364, three more than the
7,361 EDFs (v2.0.0/v2.0.1 held three tokens twice, under two montage folders); the three come off ``01_tcp_ar``.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import io
import zipfile
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from eegcache import __version__, config
from eegcache.core import montage, process, signal, store
from eegcache.core.identity import stable_hash
from eegcache.devtools.demo import (
    MONTAGE_FOLDERS,
    SAMPLE_RATES_HZ,
    Patient,
    Recording,
    Seizure,
    Session,
    csv_bi_text,
    csv_text,
    patient_ids,
)
from eegcache.versions import identity


@dataclasses.dataclass(frozen=True)
class SplitFacts:
    files: int
    patients: int
    hours: float
    seizure_hours: float


@dataclasses.dataclass(frozen=True)
class CorpusFacts:
    splits: dict[str, SplitFacts]
    montages: dict[str, int]  # EDFs per montage folder
    no_midline: int  # EDFs without FZ and PZ
    raw_bytes: float  # of the EDFs

    @property
    def files(self) -> int:
        return sum(s.files for s in self.splits.values())

    @property
    def hours(self) -> float:
        return sum(s.hours for s in self.splits.values())

    def scaled(self, factor: float) -> CorpusFacts:
        """The same corpus ``factor`` times as large (at least one patient and two files per split)."""
        splits = {
            name: SplitFacts(
                max(2, round(s.files * factor)),
                max(1, round(s.patients * factor)),
                s.hours * factor,
                s.seizure_hours * factor,
            )
            for name, s in self.splits.items()
        }
        total = sum(s.files for s in splits.values())
        montages = {name: round(count * factor) for name, count in self.montages.items()}
        largest = max(montages, key=montages.get)
        montages[largest] += total - sum(montages.values())
        return CorpusFacts(splits, montages, round(self.no_midline * factor), self.raw_bytes * factor)


# TUSZ v2.0.3 (its AAREADME and public channel reports); 01_tcp_ar is published as 5,508 (see the module docstring).
TUSZ_V203 = CorpusFacts(
    splits={
        "train": SplitFacts(4664, 579, 910.3, 48.6),
        "dev": SplitFacts(1832, 53, 435.6, 20.0),
        "eval": SplitFacts(865, 43, 127.7, 7.6),
    },
    montages={"01_tcp_ar": 5508 - 3, "02_tcp_le": 547, "03_tcp_ar_a": 1309},
    no_midline=249,
    raw_bytes=81.4e9,
)
SEIZURE_LABELS = ("fnsz", "gnsz", "cpsz", "absz", "spsz", "tcsz", "tnsz", "mysz")  # the labels TUSZ's .csv uses
_LABEL_WEIGHTS = (0.45, 0.25, 0.15, 0.03, 0.04, 0.04, 0.03, 0.01)
SEIZURE_SHARE = 0.2  # of the recordings hold a seizure
_SIGMA = 0.9  # of log(duration)
_SHORTEST_S = 16


def _split_counts(rng: np.random.Generator, total: int, parts: int) -> list[int]:
    """``total`` as ``parts`` positive counts with lognormal weights."""
    weights = rng.lognormal(0.0, 1.0, parts)
    return list(1 + rng.multinomial(total - parts, weights / weights.sum()))


def _durations(rng: np.random.Generator, files: int, seconds: int) -> np.ndarray:
    """``files`` whole-second durations (at least 16 s) adding up to exactly ``seconds``."""
    drawn = rng.lognormal(0.0, _SIGMA, files)
    durations = np.maximum(_SHORTEST_S, np.round(drawn * seconds / drawn.sum())).astype(np.int64)
    durations[np.argmax(durations)] += seconds - durations.sum()
    return durations


def _seizures(rng: np.random.Generator, durations: np.ndarray, seconds: float) -> list[list[tuple[float, float]]]:
    """(start, stop) spans in about a fifth of the recordings (60 s or longer), ``seconds`` in all: seizure time
    proportional to duration, 1-3 seizures each, one per equal slot; times in seconds, 4 decimals."""
    candidates = np.flatnonzero(durations >= 60)
    chosen = rng.choice(candidates, size=max(1, round(SEIZURE_SHARE * len(durations))), replace=False)
    share = seconds / durations[chosen].sum()
    spans: list[list[tuple[float, float]]] = [[] for _ in durations]
    for i in chosen:
        count = int(rng.integers(1, 4))
        slot, length = durations[i] / count, share * durations[i] / count
        for k in range(count):
            start = round(k * slot + rng.uniform(0, slot - length - 1e-3), 4)  # rounding never overlaps
            spans[i].append((start, round(start + length, 4)))
    return spans


def _montages(sessions: Sequence[tuple[int, int]], quotas: dict[str, int]) -> dict[int, str]:
    """Session index -> montage folder so each folder holds exactly its quota of files; ``sessions``: (index,
    files), largest first, each going to the folder with the most room left."""
    left = dict(quotas)
    chosen = {}
    for index, files in sessions:
        folder = max((f for f in MONTAGE_FOLDERS if left[f] >= files), key=lambda f: left[f])
        chosen[index] = folder
        left[folder] -= files
    assert not any(left.values()), f"montage quotas not met: {left}"
    return chosen


def plan_layout(facts: CorpusFacts = TUSZ_V203, seed: int = 0) -> list[Recording]:
    """Every recording of the fabricated corpus (``demo.Recording``; no signal key), sorted by split and name."""
    rng = np.random.default_rng([seed, 13])
    ids = iter(patient_ids(seed, sum(s.patients for s in facts.splits.values())))
    drafts = []  # (split, patient, session number, year, tokens, durations, seizures)
    for split, s in facts.splits.items():
        durations = _durations(rng, s.files, round(s.hours * 3600))
        spans = _seizures(rng, durations, s.seizure_hours * 3600)
        at = 0
        for per_patient in _split_counts(rng, s.files, s.patients):
            pid, number, year = next(ids), 0, int(rng.integers(2002, 2016))
            birthdate = datetime.date(
                year - int(rng.integers(18, 81)), int(rng.integers(1, 13)), int(rng.integers(1, 29))
            )
            patient = Patient(pid, str(rng.choice(["F", "M"])), birthdate)
            while per_patient:
                tokens = min(per_patient, int(rng.integers(1, 5)))
                number, year = number + 1, year + int(rng.integers(0, 2))
                drafts.append(
                    (split, patient, number, year, tokens, durations[at : at + tokens], spans[at : at + tokens])
                )
                at, per_patient = at + tokens, per_patient - tokens
    order = sorted(range(len(drafts)), key=lambda i: (-drafts[i][4], rng.random()))
    folders = _montages([(i, drafts[i][4]) for i in order], facts.montages)
    recordings = []
    for i, (split, patient, number, year, tokens, durations, spans) in enumerate(drafts):
        start = datetime.datetime(year, int(rng.integers(1, 13)), int(rng.integers(1, 29)), int(rng.integers(8, 16)))
        session = Session(number, year, folders[i], tokens, start)
        no_ears = {"A1", "A2"} if folders[i] == "03_tcp_ar_a" else set()
        for token, (duration, seizure_spans) in enumerate(zip(durations, spans)):
            electrodes = tuple(e for e in montage.ELECTRODES if e not in no_ears)
            kind = str(rng.choice(SEIZURE_LABELS, p=_LABEL_WEIGHTS))
            focus = {e for e in electrodes if e[-1] in "13579"} if kind in ("fnsz", "cpsz", "spsz") else set(electrodes)
            seizures = tuple(Seizure(a, b, kind, frozenset(focus)) for a, b in seizure_spans)
            when = start + datetime.timedelta(minutes=20 * token)
            recordings.append(
                Recording(
                    split,
                    patient,
                    session,
                    token,
                    when,
                    int(rng.choice(SAMPLE_RATES_HZ)),
                    int(duration),
                    electrodes,
                    seizures,
                    (),
                )
            )
    for i in rng.choice(len(recordings), size=facts.no_midline, replace=False):
        r = recordings[i]
        recordings[i] = dataclasses.replace(r, electrodes=tuple(e for e in r.electrodes if e not in ("FZ", "PZ")))
    return recordings


def write_layout(recordings: Sequence[Recording], out_dir: Path, raw_bytes: float) -> None:
    """Each recording's ``.csv`` and ``.csv_bi`` and a sparse ``.edf``; the EDFs' sizes add up to ``raw_bytes``
    (split by duration)."""
    per_second = raw_bytes / sum(r.duration_s for r in recordings)
    for r in recordings:
        stem = r.stem(out_dir)
        stem.parent.mkdir(parents=True, exist_ok=True)
        with open(stem.with_suffix(".edf"), "wb") as handle:
            handle.truncate(round(r.duration_s * per_second))
        stem.with_suffix(".csv").write_text(csv_text(r))
        stem.with_suffix(".csv_bi").write_text(csv_bi_text(r))


# --- the cache ------------------------------------------------------------------------------------------------


class _SparseWriter(io.RawIOBase):
    """A file written with holes where the data is zeros (checked per 64 KiB), for ``zipfile``."""

    _BLOCK = 1 << 16

    def __init__(self, handle: io.BufferedRandom):
        self._handle = handle

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        for at in range(0, len(view), self._BLOCK):
            block = view[at : at + self._BLOCK]
            if np.frombuffer(block, np.uint8).any():
                self._handle.write(block)
            else:
                self._handle.seek(len(block), io.SEEK_CUR)
        return len(view)

    def tell(self) -> int:
        return self._handle.tell()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._handle.seek(offset, whence)


def write_zero_recording(path: Path, labels: np.ndarray, facts: store.RecordingFacts, dtype: str) -> int:
    """The cache file ``store.encode_recording`` makes of an all-zero ``eeg`` [channels, len(labels)] of ``dtype``,
    written sparse (its EEG a hole) -> its size. Same members, order and alignment as the store's."""
    eeg = np.broadcast_to(np.zeros((), dtype=dtype), (len(facts.channels), len(labels)))  # never materialised
    members = {
        "eeg": eeg,
        "labels": labels,
        "sample_rate": np.float64(facts.sample_rate),
        "channels": np.array(facts.channels, dtype="U16"),
        "zero_filled": np.array(facts.zero_filled, dtype="U16"),
        "duration_s": np.float64(facts.duration_s),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w+b") as handle:
        out = _SparseWriter(handle)
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
            for key, value in members.items():
                value = np.asarray(value)
                info = store._member(f"{key}.npy", out.tell())  # the store's aligned member header
                header = io.BytesIO()
                np.lib.format.write_array_header_1_0(header, np.lib.format.header_data_from_array_1_0(value))
                info.file_size = len(header.getvalue()) + value.nbytes
                with archive.open(info, "w") as member:
                    np.lib.format.write_array(member, value, allow_pickle=False)
        handle.truncate()
        return handle.tell()


def _entry_task(args: tuple[Path, str, Recording, str, str, int, tuple[str, str, str]]) -> tuple[str, dict[str, Any]]:
    cache_dir, split, r, name, dtype, rate, key_parts = args
    n = r.duration_s * rate
    labels = signal.label_mask([(s.start_s, s.stop_s) for s in r.seizures], n, rate)
    zero_filled = signal.select_channels({e: np.zeros(0) for e in r.electrodes}, 0, name, "zero")[1]
    rel = f"{split}/{r.bname}{store.SUFFIX}"
    facts = store.RecordingFacts(float(rate), montage.channel_names(name), zero_filled, n / rate)
    size = write_zero_recording(cache_dir / rel, labels, facts, dtype)
    edges = np.flatnonzero(np.diff(np.concatenate(([0], labels.astype(np.int8), [0]))))
    seizures = [[int(a), int(b)] for a, b in zip(edges[::2], edges[1::2])]
    inputs = _input_digests(r)
    entry = {
        "split": split,
        "patient": r.patient.pid,
        "key": process.recording_key(key_parts, split, *inputs),
        "size": size,
        "md5": store.md5_file(cache_dir / rel),
        "samples": n,
        "seconds": n / rate,
        "seizure_seconds": sum(b - a for a, b in seizures) / rate,
        "seizures": seizures,
        "zero_filled": list(zero_filled),
    }
    return rel, entry


def _input_digests(r: Recording) -> tuple[str, str]:
    """(EDF md5, annotation md5): the EDF's is a stand-in (md5 of its name; the sparse file is never read)."""
    return hashlib.md5(r.bname.encode()).hexdigest(), hashlib.md5(csv_bi_text(r).encode()).hexdigest()


def write_cache(
    recordings: Sequence[Recording], cache_dir: Path, overrides: Sequence[str] = (), workers: int = 2
) -> dict[str, Any]:
    """The cache a build of ``recordings`` under the repo's config plus ``overrides`` would make (official splits,
    nothing skipped), its EEG all zeros and sparse; the metadata written last -> the metadata."""
    cfg = config.load(Path(__file__).resolve().parents[1], list(overrides), local=False)
    params = identity.stage_params(cfg)
    pre = params["preprocess"]
    key_parts = (stable_hash(params), process.code_digest(), ".csv_bi")
    jobs = [
        (cache_dir, r.split, r, pre["montage"], pre["dtype"], int(pre["sample_rate"]), key_parts) for r in recordings
    ]
    with ProcessPoolExecutor(workers) as pool:
        files = dict(pool.map(_entry_task, jobs, chunksize=32))
    relpath = {r.bname: "/".join(r.stem(Path()).with_suffix(".edf").parts) for r in recordings}
    metadata = process.cache_metadata(
        params=params,
        code=key_parts[1],
        package_version=__version__,
        inputs=sorted((relpath[r.bname], *_input_digests(r)) for r in recordings),
        files=files,
        skipped=[],
        excluded=[],
    )
    store.write_metadata(cache_dir, metadata)
    return metadata
