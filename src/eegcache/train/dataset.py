"""Fixed-length windows over the cache, chosen at read time from memory-mapped recordings.

The cache stores each recording once, continuous; a window is only an index (file, start sample), so changing the
window length or stride costs nothing. :class:`WindowDataset` is a PyTorch map-style dataset by shape alone
(``__len__`` and ``__getitem__``; torch is never imported) and pickles without its open files, so DataLoader
workers reopen recordings lazily. Seizure buckets come from the metadata's ``seizures`` intervals, so balanced
sampling needs no file opened.
"""

from __future__ import annotations

import logging
import operator
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from eegcache.core import store
from eegcache.errors import CacheError, ConfigError

log = logging.getLogger(__name__)

BUCKETS = ("none", "partial", "full")  # seizure overlap: 0, between 0 and the window, the whole window


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


class WindowDataset:
    """Windows of ``window_s`` seconds every ``stride_s`` seconds over the recordings of one split.

    Item ``i`` is ``(x, y)``: ``x`` float32 [channels, window_samples] (the cache's units, e.g. z-scored EEG),
    ``y`` uint8 [window_samples], 1 = seizure. Windows start at 0, stride, 2·stride, ... while the window fits;
    recordings shorter than one window contribute none (counted in ``short_recordings``). Files are taken in
    sorted key order, so the index is deterministic. At most ``max_open`` recordings stay memory-mapped
    (least recently used closed first). Not thread-safe; use one instance per process (DataLoader workers each
    get their own copy).

    Attributes: ``sample_rate`` (Hz), ``channels``, ``files`` (relative paths, sorted), ``window_samples``,
    ``stride_samples``, ``seizure_samples`` (int64 [windows], seizure samples per window), ``seizure_fraction``
    (float64 [windows], 0..1), ``buckets`` (``none``/``partial``/``full`` → int64 window indices, ascending).
    """

    def __init__(
        self, cache_dir: str | Path, split: str, window_s: float = 60.0, stride_s: float = 10.0, max_open: int = 128
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
        if int(max_open) < 1:
            raise ConfigError(f"max_open={max_open!r} must be at least 1")
        self.max_open = int(max_open)
        self.sample_rate = float(metadata["sample_rate"])
        self.channels = tuple(metadata["channels"])
        self.window_samples = _whole_samples(window_s, self.sample_rate, "window_s")
        self.stride_samples = _whole_samples(stride_s, self.sample_rate, "stride_s")

        self.files = tuple(entries)
        self._samples = np.array([int(entries[key]["samples"]) for key in self.files], dtype=np.int64)
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
        full = self.seizure_samples == self.window_samples
        self.buckets: dict[str, np.ndarray] = {
            "none": np.flatnonzero(self.seizure_samples == 0),
            "partial": np.flatnonzero((self.seizure_samples > 0) & ~full),
            "full": np.flatnonzero(full),
        }
        self._open: OrderedDict[int, store.CachedRecording] = OrderedDict()

    def __len__(self) -> int:
        return len(self._start)

    def _position(self, i: int) -> int:
        """``i`` as a non-negative window index (negative counts from the end); IndexError out of range."""
        i = operator.index(i)
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"window {i} out of range for {n} windows")
        return i % n

    def window_location(self, i: int) -> tuple[str, int]:
        """(file path relative to the cache dir, start sample) of window ``i``."""
        i = self._position(i)
        return self.files[self._file[i]], int(self._start[i])

    def window_label(self, i: int) -> int:
        """1 if window ``i`` holds any seizure sample, else 0."""
        return int(self.seizure_samples[self._position(i)] > 0)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        i = self._position(i)
        recording = self._recording(int(self._file[i]))
        start = int(self._start[i])
        stop = start + self.window_samples
        store.prefetch_columns(recording.eeg, start, stop)
        # np.array copies out of the memmap, so no view keeps a file mapped after eviction.
        x = np.array(recording.eeg[:, start:stop], dtype=np.float32)
        y = np.array(recording.labels[start:stop], dtype=np.uint8)
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

        ``weights`` maps bucket names (``none``, ``partial``, ``full``) to non-negative weights, normalised to sum
        to 1; missing buckets weigh 0. Bucket counts follow a multinomial draw, then windows are drawn uniformly
        within each bucket. ``rng`` is a numpy Generator or a seed. ConfigError for unknown buckets, negative or
        all-zero weights, or a positive weight on a bucket this split has no windows in.
        """
        unknown = set(weights) - set(BUCKETS)
        if unknown:
            raise ConfigError(f"unknown buckets {sorted(unknown)}; expected some of {list(BUCKETS)}")
        p = np.array([float(weights.get(name, 0.0)) for name in BUCKETS])
        if np.any(p < 0) or not p.sum() > 0:
            raise ConfigError(f"bucket weights must be non-negative with a positive sum, got {weights}")
        empty = [name for name, w in zip(BUCKETS, p) if w > 0 and len(self.buckets[name]) == 0]
        if empty:
            raise ConfigError(f"split {self.split!r} has no {'/'.join(empty)} windows; give them weight 0")
        rng = np.random.default_rng(rng)
        counts = rng.multinomial(int(n), p / p.sum())
        drawn = [rng.choice(self.buckets[name], size=c) for name, c in zip(BUCKETS, counts) if c]
        return rng.permutation(np.concatenate(drawn)) if drawn else np.zeros(0, dtype=np.int64)
