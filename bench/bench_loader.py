"""``make bench`` (after ``bench_scale.py``): the training loader side by side with its floor and braindecode.

What it measures (issue 19, "A benchmark, side by side in one run"): windows per second that a PyTorch training
loop receives, batch 64, 60 s windows at 10 s stride, in one fixed random order, with 0 and 2 DataLoader workers,
warm (every file in the page cache) and cold (every file's pages dropped before the pass), for:

- **floor float16**: no framework: the memory maps opened once per process, each batch of 64 windows (EEG and the
  per-sample labels) sliced from them, one ``np.stack`` per batch, wrapped with ``torch.from_numpy``. With 2 workers
  the same function runs in a minimal dataset of whole batches under ``DataLoader(batch_size=None)``.
- **floor float32**: the same, the cast made inside the stack (``np.stack(..., dtype=float32)``: one pass).
- **eegcache** ``WindowDataset(dtype="float16"|"float32")`` through :func:`eegcache.torch.window_loader` (a batch
  per ``dataset[indices]``), with and without ``prefetch`` (off by default); and through a plain ``DataLoader(ds, batch_size=64,
  sampler=...)`` (its default collate over ``__getitems__``), the loader a user writes by habit.
- **braindecode** lazy windows (``create_fixed_length_windows(..., preload=False)``) over the same recordings
  written as FIF files (float32, the cache's preprocessed signal, so the windows hold the same numbers), read by MNE
  on demand; its targets are one label per window.

The corpus is the demo generator's (``patients_per_split=8, seed=1``: 24 h of EEG), built by ``run_build``; the
train split is read. Every implementation's first batch is compared with the floor's. Warm figures are the best of
``PASSES`` passes after one pass that warms the page cache; cold figures are one pass after dropping the pages
(``posix_fadvise(DONTNEED)``; every map closed first, since mapped pages are not dropped). Each pass builds its
loader afresh (new datasets, new worker processes) and starts its clock after the first ``SKIP`` batches (worker
start-up). Results go into ``bench/README.md`` between the ``bench-loader:results`` markers.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from collections.abc import Callable, Iterable
from importlib import metadata as importlib_metadata
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from bench_build import build, build_config
from bench_remote import Check, in_work_dir, say, write_readme
from bench_resolve import drop_pages, render
from torch.utils.data import DataLoader

from eegcache.core import store
from eegcache.devtools.demo import write_demo_corpus
from eegcache.torch import window_loader
from eegcache.train.dataset import WindowDataset

BATCH = 64
WINDOW_S, STRIDE_S = 60.0, 10.0
BATCHES = 40  # timed batches per pass (2,560 windows: 1.2 GB of float16 EEG)
SLOW_BATCHES = 8  # for braindecode, whose reads take milliseconds per window
SKIP = 2  # batches received before the clock starts (worker start-up)
PASSES = 5  # warm: best of
WORKERS = (0, 2)
TARGET = 0.8  # eegcache ≥ 0.8 × the floor of the same dtype, warm
MARKS = ("<!-- bench-loader:results -->", "<!-- /bench-loader:results -->")

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


class FloorBatches:
    """Batch ``b`` of ``order``: windows sliced from memory maps, one ``np.stack`` each for EEG and labels."""

    def __init__(self, cache_dir: Path, files: tuple[str, ...], window: np.ndarray, order: np.ndarray, dtype):
        self.cache_dir, self.files, self.dtype = cache_dir, files, dtype
        self.file, self.start, self.length = window[0], window[1], int(window[2][0])
        self.order = order.reshape(-1, BATCH)
        self.maps: dict[int, store.CachedRecording] = {}

    def __len__(self) -> int:
        return len(self.order)

    def recording(self, k: int) -> store.CachedRecording:
        if k not in self.maps:
            self.maps[k] = store.open_recording(self.cache_dir / self.files[k], mmap=True)
        return self.maps[k]

    def __getitem__(self, b: int) -> tuple[np.ndarray, np.ndarray]:
        picks = [(self.recording(int(self.file[i])), int(self.start[i])) for i in self.order[b]]
        x = np.stack([r.eeg[:, s : s + self.length] for r, s in picks], dtype=self.dtype)
        y = np.stack([r.labels[s : s + self.length] for r, s in picks])
        return x, y

    def __getstate__(self) -> dict:
        return {**self.__dict__, "maps": {}}


def floor(cache_dir: Path, order: np.ndarray, dtype: str) -> Callable[[int], Batches]:
    def batches(workers: int) -> Batches:
        ds = WindowDataset(cache_dir, "train", WINDOW_S, STRIDE_S)  # only for the window index
        window = np.stack([ds.window_file, ds.window_start, np.full(len(ds), ds.window_samples)])
        source = FloorBatches(cache_dir, ds.files, window, order, np.dtype(dtype))
        if workers == 0:
            return (tuple(map(torch.from_numpy, source[b])) for b in range(len(source)))
        return DataLoader(source, batch_size=None, num_workers=workers)

    return batches


def eegcache_loader(cache_dir: Path, order: np.ndarray, dtype: str, habit: bool = False, prefetch: bool = False):
    def batches(workers: int) -> Batches:
        ds = WindowDataset(cache_dir, "train", WINDOW_S, STRIDE_S, dtype=dtype, prefetch=prefetch)
        if habit:
            return DataLoader(ds, batch_size=BATCH, sampler=order.tolist(), num_workers=workers)
        return window_loader(ds, BATCH, order.tolist(), num_workers=workers)

    return batches


def write_fif(cache_dir: Path, out_dir: Path) -> list[Path]:
    """Every train recording of the cache as a float32 FIF file (the preprocessed signal), in the dataset's order."""
    import mne

    ds = WindowDataset(cache_dir, "train", WINDOW_S, STRIDE_S)
    info = mne.create_info(list(ds.channels), ds.sample_rate, ch_types="eeg")
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, name in enumerate(ds.files):
        eeg = store.open_recording(cache_dir / name, mmap=False).eeg.astype(np.float32)
        path = out_dir / f"rec{k:04d}_raw.fif"
        mne.io.RawArray(eeg, info, verbose="error").save(path, fmt="single", verbose="error")
        paths.append(path)
    return paths


def braindecode_loader(fif: list[Path], order: np.ndarray, window_samples: int, stride_samples: int):
    import mne
    from braindecode.datasets import BaseConcatDataset, RawDataset
    from braindecode.preprocessing import create_fixed_length_windows

    def batches(workers: int) -> Batches:
        raws = [mne.io.read_raw_fif(path, preload=False, verbose="error") for path in fif]
        concat = BaseConcatDataset([RawDataset(raw, target_name=None) for raw in raws])
        windows = create_fixed_length_windows(
            concat,
            window_size_samples=window_samples,
            window_stride_samples=stride_samples,
            drop_last_window=True,
            preload=False,
        )
        return DataLoader(windows, batch_size=BATCH, sampler=order.tolist(), num_workers=workers)

    return batches


def first_batch(batches: Batches) -> np.ndarray:
    x = next(iter(batches))[0]
    return x.numpy()


def one_pass(batches: Batches, limit: int) -> float:
    """Windows per second received after the first SKIP batches, over ``limit`` batches."""
    seen, started = 0, 0.0
    for n, batch in enumerate(batches):  # (x, y), or braindecode's (x, y, crop indices)
        if n == SKIP:
            started = time.perf_counter()
        elif n > SKIP:
            seen += len(batch[0])
        if n == SKIP + limit:
            break
    return seen / (time.perf_counter() - started)


def measure(make: Callable[[int], Batches], workers: int, limit: int, files: list[Path], cold: bool) -> float:
    def run() -> float:
        gc.collect()  # no map of an earlier pass may hold pages
        if cold:
            drop_pages(files)
        batches = make(workers)
        rate = one_pass(batches, limit)
        del batches
        return rate

    if cold:
        return run()
    run()  # the page cache warms
    return max(run() for _ in range(PASSES))


def run(work: Path) -> tuple[list[Check], str, str, list[str]]:
    corpus = work / "corpus"
    started = time.perf_counter()
    if not corpus.is_dir():  # a kept --work directory is reused
        write_demo_corpus(corpus, patients_per_split=8, seed=1, minutes=(10.0, 20.0))
    cfg = build_config(corpus, work, "cache", workers=2)
    build(cfg)
    cache_dir = Path(cfg.build.out_dir)
    ds = WindowDataset(cache_dir, "train", WINDOW_S, STRIDE_S)
    cache_files = [cache_dir / name for name in ds.files]
    fif = write_fif(cache_dir, work / "fif")
    say(f"  corpus, cache and FIF copies in {time.perf_counter() - started:.0f} s")
    rng = np.random.default_rng(0)
    order = rng.choice(len(ds), size=(SKIP + BATCHES + 1) * BATCH, replace=len(ds) < (SKIP + BATCHES + 1) * BATCH)

    kinds: list[tuple[str, Callable[[int], Batches], list[Path], int, str]] = [
        ("floor float16 (memmap slices, `np.stack`, `torch.from_numpy`)", floor(cache_dir, order, "float16"),
         cache_files, BATCHES, "float16"),
        ("eegcache float16 (`window_loader`)", eegcache_loader(cache_dir, order, "float16"), cache_files, BATCHES,
         "float16"),
        ("eegcache float16, `prefetch=True`", eegcache_loader(cache_dir, order, "float16", prefetch=True),
         cache_files, BATCHES, "float16"),
        ("eegcache float16 (`DataLoader(ds, batch_size=64)`, default collate)",
         eegcache_loader(cache_dir, order, "float16", habit=True), cache_files, BATCHES, "float16"),
        ("floor float32 (the same, cast inside `np.stack`)", floor(cache_dir, order, "float32"), cache_files,
         BATCHES, "float32"),
        ("eegcache float32 (`window_loader`)", eegcache_loader(cache_dir, order, "float32"), cache_files, BATCHES,
         "float32"),
        ("braindecode lazy windows (MNE, float32 FIF of the same signal)",
         braindecode_loader(fif, order, ds.window_samples, ds.stride_samples), fif, SLOW_BATCHES, "float32"),
    ]  # fmt: skip
    reference = {dtype: first_batch(floor(cache_dir, order, dtype)(0)) for dtype in ("float16", "float32")}
    same = {name: bool(np.array_equal(first_batch(make(0)), reference[dtype])) for name, make, _, _, dtype in kinds}

    rates: dict[tuple[str, str, int], float] = {}
    for regime in ("warm", "cold"):
        for name, make, files, limit, _ in kinds:
            for workers in WORKERS:
                rates[name, regime, workers] = measure(make, workers, limit, files, regime == "cold")
                say(f"  {regime} {workers} workers  {rates[name, regime, workers]:8.0f} windows/s  {name}")

    mb_per_window = len(ds.channels) * ds.window_samples * 2 / 1e6
    table = ["| loader (first batch equal to the floor's) | " + " | ".join(
        f"{regime}, {w} workers" for regime in ("warm", "cold") for w in WORKERS) + " |",
        "|---|" + "---:|" * (2 * len(WORKERS))]  # fmt: skip
    for name, *_ in kinds:
        cells = [f"{rates[name, regime, w]:,.0f}" for regime in ("warm", "cold") for w in WORKERS]
        table.append(f"| {name} ({'yes' if same[name] else 'NO'}) | " + " | ".join(cells) + " |")

    checks = []
    for dtype, name, floor_name in (
        ("float16", kinds[1][0], kinds[0][0]),
        ("float32", kinds[5][0], kinds[4][0]),
    ):
        for workers in WORKERS:
            ratio = rates[name, "warm", workers] / rates[floor_name, "warm", workers]
            checks.append(
                Check(
                    f"eegcache {dtype} / floor {dtype}, warm, {workers} workers (windows/s)",
                    f"{rates[name, 'warm', workers]:,.0f} / {rates[floor_name, 'warm', workers]:,.0f} = "
                    f"**{ratio:.2f}×**",
                    f"≥ {TARGET}×",
                    ratio >= TARGET and same[name],
                )
            )
    braindecode_name = kinds[-1][0]
    for workers in WORKERS:
        ratio = rates[kinds[1][0], "warm", workers] / rates[braindecode_name, "warm", workers]
        checks.append(
            Check(f"eegcache float16 / braindecode lazy, warm, {workers} workers", f"**{ratio:.0f}×**", "", None)
        )

    hours = float(ds.file_samples.sum()) / ds.sample_rate / 3600
    data_line = (
        f"demo generator (`patients_per_split=8, seed=1`, 10-20 min recordings), built with `run_build`; the train "
        f"split: {len(ds.files)} recordings, {hours:.1f} h, {len(ds):,} windows of {WINDOW_S:g} s at "
        f"{STRIDE_S:g} s stride ({mb_per_window:.2f} MB of float16 EEG each), batches of {BATCH} in one random "
        f"order; {BATCHES} timed batches per pass ({SLOW_BATCHES} for braindecode) after {SKIP}."
    )
    versions = ", ".join(f"{lib} {importlib_metadata.version(lib)}" for lib in ("torch", "braindecode", "mne"))
    notes = [
        f"Libraries: {versions}; torch threads {torch.get_num_threads()}, load average at the end "
        f"{os.getloadavg()[0]:.2f}.",
        "braindecode's y is one label per window; every other loader's is the per-sample mask. Its first batch "
        "equals the float32 floor's because the FIF files hold the float16 values exactly.",
    ]
    heading = "Windows per second received by the loop (a window: 19 channels × 12,000 samples, with its labels):"
    return checks, data_line, "\n".join([heading, "", *table]), notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, help="work directory (default: a new temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--no-readme", action="store_true", help="print only; leave bench/README.md alone")
    args = parser.parse_args(argv)
    command = " ".join([".venv/bin/python bench/bench_loader.py", *(argv or sys.argv[1:])])
    checks, data_line, table, notes = in_work_dir(args, "eegcache-bench-loader-", run)
    if not args.no_readme:
        block = render(command, checks, data_line, notes, MARKS, after="bench_scale.py")
        block = block.replace(MARKS[1], f"{table}\n\n{MARKS[1]}")
        write_readme(block, MARKS, "Training loader: eegcache, its floor and braindecode")
        say("results written to bench/README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
