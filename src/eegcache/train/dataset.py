"""Fixed-length windows over the cache, chosen at read time from memory-mapped recordings.

The cache stores each recording once, continuous; a window is only an index (file, start sample), so changing the
window length or stride costs nothing. :class:`WindowDataset` is a PyTorch map-style dataset by shape alone
(``__len__`` and ``__getitem__``; torch is never imported) and pickles without its open files, so DataLoader
workers reopen recordings lazily. Window labels and seizure buckets come from the metadata's ``seizures`` intervals,
so balanced sampling needs no file opened.

One window-label rule: a window is *seizure* when at least ``min_seizure_fraction`` of its samples are labelled
seizure (``label="fraction"``, the baseline's and the metrics' rule), unless the dataset is asked for another
(``"any"``: one seizure sample; ``"center"``: its centre sample). :attr:`WindowDataset.window_labels`,
:meth:`~WindowDataset.window_label`, the buckets and the balanced draws all follow the dataset's rule.

For a PyTorch ``DataLoader``, :meth:`WindowDataset.__getitems__` reads a batch at once, and a list of indices as one
item (``ds[[3, 9, 4]]``) gives the batch already stacked, ``(x [n, channels, samples], y [n, ...])``: with
``DataLoader(ds, batch_size=None, sampler=BatchSampler(...))`` the windows are copied once, straight from the memory
maps into the batch (:func:`eegcache.torch.window_loader` builds that loader).
"""

from __future__ import annotations

import logging
import operator
import resource
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from eegcache.core import store
from eegcache.errors import CacheError, ConfigError

log = logging.getLogger(__name__)

BUCKETS = ("none", "partial", "seizure")  # no seizure sample; some, yet labelled background; labelled seizure
LABELS = ("samples", "any", "fraction", "center")  # what y is: the per-sample mask, or the window's label by a rule
DTYPES = ("float16", "float32", None)  # what x is returned as (None: the cache's own dtype, no cast)
MAX_OPEN_CAP = 1024  # memory maps kept open at most when max_open is not given (each holds a file descriptor)


def _whole_samples(seconds: float, rate: float, name: str) -> int:
    """``seconds`` as a positive whole number of samples at ``rate`` Hz; ConfigError otherwise."""
    exact = float(seconds) * rate
    samples = round(exact)
    if samples <= 0 or abs(exact - samples) > 1e-6 * max(1.0, exact):
        raise ConfigError(f"{name}={seconds!r} s is not a positive whole number of samples at {rate:g} Hz")
    return samples


def _seizure_overlap(intervals: list[list[int]], starts: np.ndarray, length: int, samples: int, key: str) -> np.ndarray:
    """Seizure samples inside each window [start, start + length) given sorted, disjoint [a, b) intervals."""
    spans = np.asarray(intervals, dtype=np.int64).reshape(-1, 2)
    a, b = spans[:, 0], spans[:, 1]
    if np.any(a >= b) or np.any(a[1:] < b[:-1]) or (len(a) and (a[0] < 0 or b[-1] > samples)):
        raise CacheError(f"seizure intervals are not sorted, disjoint [start, stop) within {samples} samples", key)
    if len(a) == 0:
        return np.zeros(len(starts), dtype=np.int64)
    before = np.concatenate(([0], np.cumsum(b - a)))  # seizure samples in the intervals before interval j

    def seizure_samples_before(t: np.ndarray) -> np.ndarray:
        # last interval starting at or before t; for t before the first one (j = -1) both terms are 0 at j = 0
        j = np.maximum(np.searchsorted(a, t, side="right") - 1, 0)
        return before[j] + np.clip(t - a[j], 0, b[j] - a[j])

    return seizure_samples_before(starts + length) - seizure_samples_before(starts)


def _inside(intervals: list[list[int]], samples: np.ndarray) -> np.ndarray:
    """1 where a sample index lies in one of the sorted, disjoint [a, b) intervals, else 0 (uint8)."""
    spans = np.asarray(intervals, dtype=np.int64).reshape(-1, 2)
    j = np.searchsorted(spans[:, 0], samples, side="right") - 1
    return (
        ((j >= 0) & (samples < spans[np.maximum(j, 0), 1])).astype(np.uint8)
        if len(spans)
        else np.zeros(len(samples), dtype=np.uint8)
    )


def default_max_open(files: int) -> int:
    """Memory maps to keep open when ``max_open`` is not given: every file of the split (no file is mapped twice
    in an epoch), at most a quarter of this process's file-descriptor limit and :data:`MAX_OPEN_CAP`."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = soft // 4 if soft != resource.RLIM_INFINITY else MAX_OPEN_CAP
    return max(1, min(files, limit, MAX_OPEN_CAP))


class WindowDataset:
    """Windows of ``window_s`` seconds every ``stride_s`` seconds over the recordings of one split.

    Item ``i`` is ``(x, y)``: ``x`` [channels, window_samples] in ``dtype`` (``"float32"``, ``"float16"`` or None
    for the cache's own, e.g. float16 z-scored EEG, with no cast: the fastest), ``y`` by ``label``: ``"samples"``
    the uint8 per-sample mask [window_samples] (1 = seizure), else the window's uint8 label by that rule (see the
    module docstring; ``min_seizure_fraction`` for ``"fraction"``). Windows start at 0, stride, 2·stride, ... while
    the window fits; recordings shorter than one window contribute none (counted in ``short_recordings``). Files are
    taken in sorted key order, so the index is deterministic. At most ``max_open`` recordings stay memory-mapped
    (least recently used closed first; default :func:`default_max_open`: the whole split up to 1,024, so a random
    order over TUSZ train's 4,664 files keeps the most recent 1,024 mapped). ``prefetch``: ask the kernel for each
    window's 19 row ranges together before copying it (one ``madvise`` per row): off by default, since on a warm
    page cache, the regime that feeds a GPU, those calls cost 40 % of a batch's time; it shortens single random
    reads from a cold disk (see bench/README.md). Not
    thread-safe; use one instance per process (DataLoader workers each get their own copy).

    Attributes: ``sample_rate`` (Hz), ``channels``, ``files`` (relative paths, sorted), ``window_samples``,
    ``stride_samples``, ``seizure_samples`` (int64 [windows], seizure samples per window), ``seizure_fraction``
    (float64 [windows], 0..1), ``window_labels`` (uint8 [windows], the label rule; ``"samples"`` uses
    ``"fraction"``), ``buckets`` (``none``/``partial``/``seizure`` → int64 window indices, ascending),
    ``seizures`` (per file, its seizure intervals [start, stop) in samples), ``window_file``, ``window_start``.
    """

    def __init__(
        self,
        cache_dir: str | Path,
        split: str,
        window_s: float = 60.0,
        stride_s: float = 10.0,
        max_open: int | None = None,
        *,
        dtype: str | None = "float32",
        label: str = "samples",
        min_seizure_fraction: float = 0.5,
        prefetch: bool = False,
    ):
        self.cache_dir = Path(cache_dir)
        self.split = split
        metadata = store.read_metadata(self.cache_dir)
        entries = {key: entry for key, entry in sorted(metadata["files"].items()) if entry["split"] == split}
        if not entries:
            present = sorted({entry["split"] for entry in metadata["files"].values()})
            raise CacheError(
                f"no split {split!r} in the cache (present: {', '.join(present) or 'none'})",
                self.cache_dir / store.METADATA_NAME,
            )
        if max_open is not None and (
            isinstance(max_open, bool) or not isinstance(max_open, (int, np.integer)) or max_open < 1
        ):
            raise ConfigError(f"max_open={max_open!r} must be a whole number, at least 1")
        if dtype not in DTYPES or label not in LABELS:
            raise ConfigError(
                f"dtype={dtype!r}, label={label!r}: expected dtype one of {DTYPES}, label one of {LABELS}"
            )
        if not 0 < min_seizure_fraction <= 1:
            raise ConfigError(f"min_seizure_fraction={min_seizure_fraction!r}: expected a share in (0, 1]")
        self.max_open = default_max_open(len(entries)) if max_open is None else int(max_open)
        self.dtype, self.label, self.min_seizure_fraction, self.prefetch = dtype, label, min_seizure_fraction, prefetch
        self.sample_rate = float(metadata["sample_rate"])
        self.channels = tuple(metadata["channels"])
        self.cache_dtype = np.dtype(metadata.get("dtype", "float32"))  # the recordings' own (preprocess.dtype)
        self.window_samples = _whole_samples(window_s, self.sample_rate, "window_s")
        self.stride_samples = _whole_samples(stride_s, self.sample_rate, "stride_s")

        self.files = tuple(entries)
        self._samples = np.array([int(entries[key]["samples"]) for key in self.files], dtype=np.int64)
        self.seizures = tuple([tuple(span) for span in entries[key].get("seizures", [])] for key in self.files)
        fits = self._samples >= self.window_samples
        counts = np.where(fits, (self._samples - self.window_samples) // self.stride_samples + 1, 0)
        self.short_recordings = int(np.count_nonzero(~fits))
        if self.short_recordings:
            log.info(
                "%s: %d of %d recordings are shorter than one %g s window and give no windows",
                split,
                self.short_recordings,
                len(self.files),
                window_s,
            )
        first = np.concatenate(([0], np.cumsum(counts)[:-1]))
        self._file = np.repeat(np.arange(len(self.files), dtype=np.int64), counts)
        self._start = (np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(first, counts)) * self.stride_samples

        overlap = [
            _seizure_overlap(
                entries[key].get("seizures", []),
                self._start[first[k] : first[k] + counts[k]],
                self.window_samples,
                int(self._samples[k]),
                key,
            )
            for k, key in enumerate(self.files)
        ]
        self.seizure_samples = np.concatenate(overlap) if overlap else np.zeros(0, dtype=np.int64)
        self.seizure_fraction = self.seizure_samples / self.window_samples
        if label == "any":
            self.window_labels = (self.seizure_samples > 0).astype(np.uint8)
        elif label == "center":
            centres = [
                _inside(
                    entries[key].get("seizures", []),
                    self._start[first[k] : first[k] + counts[k]] + self.window_samples // 2,
                )
                for k, key in enumerate(self.files)
            ]
            self.window_labels = np.concatenate(centres) if centres else np.zeros(0, dtype=np.uint8)
        else:  # "fraction", and "samples" (whose y is the mask, its window label the default rule)
            self.window_labels = (self.seizure_fraction >= min_seizure_fraction).astype(np.uint8)
        seizure = self.window_labels == 1
        self.buckets: dict[str, np.ndarray] = {
            "none": np.flatnonzero(self.seizure_samples == 0),
            "partial": np.flatnonzero((self.seizure_samples > 0) & ~seizure),
            "seizure": np.flatnonzero(seizure),
        }
        self._open: OrderedDict[int, store.CachedRecording] = OrderedDict()
        self._warned: set[tuple[str, ...]] = set()  # empty buckets already reported

    def __len__(self) -> int:
        return len(self._start)

    def _position(self, i: int) -> int:
        """``i`` as a non-negative window index (negative counts from the end); IndexError out of range."""
        if isinstance(i, (bool, np.bool_)):
            raise TypeError(f"window index {i!r}: a boolean is not a window number")
        i = operator.index(i)
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"window {i} out of range for {n} windows")
        return i % n

    def window_location(self, i: int) -> tuple[str, int]:
        """(file path relative to the cache dir, start sample) of window ``i``."""
        i = self._position(i)
        return self.files[self._file[i]], int(self._start[i])

    @property
    def file_samples(self) -> np.ndarray:
        """Samples per recording of :attr:`files` (int64): each one's length."""
        return self._samples

    @property
    def window_file(self) -> np.ndarray:
        """Per window, its recording's position in :attr:`files` (int64 [windows])."""
        return self._file

    @property
    def window_start(self) -> np.ndarray:
        """Per window, its first sample in its recording (int64 [windows])."""
        return self._start

    def window_label(self, i: int) -> int:
        """Window ``i``'s label by the dataset's rule (:attr:`window_labels`): 1 = seizure, 0 = background."""
        return int(self.window_labels[self._position(i)])

    def __getitem__(self, i: int | Sequence[int] | np.ndarray) -> tuple[np.ndarray, Any]:
        """Window ``i`` as ``(x, y)``; a sequence of indices gives the batch stacked, ``(x [n, ...], y [n, ...])``."""
        if isinstance(i, np.ndarray) and i.ndim == 0:
            i = i.item()  # numpy's 0-d array, e.g. what indexing an index array by one position gives
        if isinstance(i, (Sequence, np.ndarray)) and not isinstance(i, (str, bytes)):
            return self._batch([self._position(k) for k in i])
        i = self._position(i)
        x, y = self._batch([i])
        return x[0], y[0]

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[np.ndarray, Any]]:
        """The windows ``indices`` as a list of ``(x, y)`` (what a DataLoader's default collate stacks), read in one
        pass: the batch is allocated once and each window copied into it straight from its memory map."""
        x, y = self._batch([self._position(k) for k in indices])
        return list(zip(x, y, strict=True))

    def _batch(self, positions: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """x [n, channels, window_samples] (the dataset's dtype) and y [n, window_samples] or [n] of ``positions``."""
        length = self.window_samples
        files = self._file[positions]
        x = np.empty((len(positions), len(self.channels), length), dtype=self.dtype or self.cache_dtype)
        mask = self.label == "samples"
        y = np.empty((len(positions), length) if mask else len(positions), dtype=np.uint8)
        for n, (i, k) in enumerate(zip(positions, files.tolist(), strict=True)):
            recording = self._recording(int(k))
            start = int(self._start[i])
            if self.prefetch:
                store.prefetch_columns(recording.eeg, start, start + length)
            x[n] = recording.eeg[:, start : start + length]  # the one copy, out of the memory map (cast on the way)
            if mask:
                y[n] = recording.labels[start : start + length]
        if not mask:
            y[:] = self.window_labels[positions]
        return x, y

    @property
    def open_count(self) -> int:
        """How many recordings are memory-mapped right now (at most ``max_open``)."""
        return len(self._open)

    def _recording(self, k: int) -> store.CachedRecording:
        if k in self._open:
            self._open.move_to_end(k)
            return self._open[k]
        path = self.cache_dir / self.files[k]
        if not path.is_file():
            raise CacheError("listed in the cache metadata but missing (pull or rebuild the cache)", path)
        recording = store.open_recording(path, mmap=True)
        if recording.eeg.shape != (len(self.channels), int(self._samples[k])):
            raise CacheError(
                f"eeg shape {recording.eeg.shape} but the metadata says "
                f"{len(self.channels)} channels × {int(self._samples[k])} samples",
                path,
            )
        self._open[k] = recording
        if len(self._open) > self.max_open:
            self._open.popitem(last=False)  # dropping the last reference unmaps the file
        return recording

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_open"] = OrderedDict()  # memmaps stay behind; each process reopens what it reads
        return state

    def balanced_indices(self, n: int, rng: np.random.Generator | int | None, weights: dict[str, float]) -> np.ndarray:
        """``n`` window indices (int64, shuffled) drawn with replacement so buckets appear in ``weights`` proportions.

        ``weights`` maps bucket names (``none``, ``partial``, ``seizure``) to non-negative weights, normalised to sum
        to 1; missing buckets weigh 0 (``full``, the name before the one label rule, means ``seizure``). Bucket
        counts follow a multinomial draw, then windows are drawn uniformly within each bucket. A weighted bucket this
        split has no window in is left out with a warning and the others share its weight (with 60 s windows a
        split may have no window labelled seizure at all). ``rng`` is a numpy Generator or a seed. ConfigError for
        unknown buckets, negative or all-zero weights, or when every weighted bucket is empty.
        """
        if "full" in weights:
            log.warning("bucket 'full' is now 'seizure' (windows labelled seizure by min_seizure_fraction)")
            weights = {("seizure" if k == "full" else k): v for k, v in weights.items()}
        unknown = set(weights) - set(BUCKETS)
        if unknown:
            raise ConfigError(f"unknown buckets {sorted(unknown)}; expected some of {list(BUCKETS)}")
        p = np.array([float(weights.get(name, 0.0)) for name in BUCKETS])
        if np.any(p < 0) or not p.sum() > 0:
            raise ConfigError(f"bucket weights must be non-negative with a positive sum, got {weights}")
        empty = [name for name, w in zip(BUCKETS, p, strict=True) if w > 0 and len(self.buckets[name]) == 0]
        if empty:
            p = np.array([0.0 if name in empty else w for name, w in zip(BUCKETS, p, strict=True)])
            if not p.sum() > 0:
                raise ConfigError(f"split {self.split!r} has no window in any weighted bucket ({', '.join(empty)})")
            if tuple(empty) not in self._warned:  # once per dataset, not once per epoch
                self._warned.add(tuple(empty))
                log.warning(
                    "split %r has no %s windows: balancing over the other buckets (%s)",
                    self.split,
                    "/".join(empty),
                    ", ".join(f"{name} {w / p.sum():.2f}" for name, w in zip(BUCKETS, p, strict=True) if w),
                )
        rng = np.random.default_rng(rng)
        counts = rng.multinomial(int(n), p / p.sum())
        drawn = [rng.choice(self.buckets[name], size=c) for name, c in zip(BUCKETS, counts, strict=True) if c]
        return rng.permutation(np.concatenate(drawn)) if drawn else np.zeros(0, dtype=np.int64)
