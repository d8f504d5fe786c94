"""A seizure detector of one's own on an eegcache cache: braindecode's ShallowFBCSPNet (Schirrmeister et al. 2017).

The trainer signature of :mod:`eegcache.train.runs`; selected with ``train=shallow`` (``conf/train/shallow.yaml``), its
settings under ``train.args`` (``train.args.epochs=5``, ``train.args.model.drop_prob=0.3``). Run it with

    PYTHONPATH=examples eegcache train train=shallow                      # here, on the workspace's cache
    PYTHONPATH=examples modal run deploy/modal/app.py --rev cache-v1 --overrides "train=shallow"   # on an A100

What it shows: windows read with :class:`eegcache.train.dataset.WindowDataset` (float32, the one window-label rule
``min_seizure_fraction``) through a torch ``DataLoader``; seizure-balanced batches from
:class:`eegcache.torch.BucketSampler`; a checkpoint every ``checkpoint_every`` batches (model, optimiser, sampler
position, RNG) written atomically in ``checkpoint_dir`` and committed, so a preempted run resumes exactly where it
stopped (the same weights as a run never stopped); window and event metrics on the eval split with eegcache's own
functions, so its numbers compare with the baseline's.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from braindecode.models import ShallowFBCSPNet

from eegcache.config import Config
from eegcache.torch import BucketSampler, window_loader
from eegcache.train.baseline import detection_metrics
from eegcache.train.dataset import WindowDataset
from eegcache.train.events import dataset_event_metrics

CHECKPOINT = "last.pt"
STOP_AFTER = "SHALLOW_STOP_AFTER_BATCHES"  # tests: stop (as a preemption would) after this many batches in all


class Preempted(RuntimeError):
    """Raised after ``SHALLOW_STOP_AFTER_BATCHES`` batches: a stand-in for the container going away."""


def fit(
    *, cache_dir: Path, config: Config, run_dir: Path, checkpoint_dir: Path, commit: Callable[[], None]
) -> dict[str, float | int]:
    t, args = config.train, config.train.args
    torch.manual_seed(t.seed)
    train = _windows(cache_dir, t.train_split, config)
    model = ShallowFBCSPNet(
        n_chans=len(train.channels),
        n_outputs=2,
        n_times=train.window_samples,
        sfreq=train.sample_rate,
        **dict(args.get("model", {})),
    )
    optimiser = torch.optim.AdamW(model.parameters(), lr=float(args["lr"]), weight_decay=float(args["weight_decay"]))
    sampler = BucketSampler(train, seed=t.seed, num_samples=int(args["windows_per_epoch"]))
    epoch, done = 0, 0  # done: batches of this epoch already trained
    saved = checkpoint_dir / CHECKPOINT
    if saved.exists():
        state = torch.load(saved, weights_only=False)
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        torch.set_rng_state(state["rng"])
        epoch, done = state["epoch"], state["batches"]
    total = epoch * -(-sampler.num_samples // int(args["batch_size"])) + done  # batches trained, all epochs
    stop_after = int(os.environ.get(STOP_AFTER, "0"))
    while epoch < int(args["epochs"]):
        sampler.load_state_dict({"epoch": epoch, "position": done * int(args["batch_size"])})  # where it stopped
        # its own generator: making a loader draws a seed, which must not move the RNG that dropout uses
        order = torch.Generator().manual_seed(t.seed + epoch)
        loader = window_loader(
            train, int(args["batch_size"]), sampler, num_workers=int(args["workers"]), generator=order
        )
        model.train()
        for x, y in loader:
            loss = torch.nn.functional.cross_entropy(model(x), y.long())
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            done, total = done + 1, total + 1
            if done % int(args["checkpoint_every"]) == 0:
                _save(saved, model, optimiser, epoch, done, commit)
            if total == stop_after:
                raise Preempted(f"stopped after {total} batches")
        epoch, done = epoch + 1, 0
        _save(saved, model, optimiser, epoch, done, commit)
    torch.save(model.state_dict(), run_dir / "model.pt")
    return _evaluate(model, _windows(cache_dir, t.eval_split, config), config, int(args["batch_size"]))


def _windows(cache_dir: Path, split: str, config: Config) -> WindowDataset:
    t = config.train
    return WindowDataset(
        cache_dir,
        split,
        window_s=t.window_s,
        stride_s=t.stride_s,
        dtype="float32",
        label="fraction",
        min_seizure_fraction=t.min_seizure_fraction,
    )


def _save(path: Path, model: Any, optimiser: Any, epoch: int, batches: int, commit: Callable[[], None]) -> None:
    """The checkpoint written to a temporary file, then renamed: a preemption mid-write leaves the last one whole."""
    state = {
        "model": model.state_dict(),
        "optimiser": optimiser.state_dict(),
        "rng": torch.get_rng_state(),
        "epoch": epoch,
        "batches": batches,
    }
    partial = path.with_name(f".{path.name}.partial")
    torch.save(state, partial)
    os.replace(partial, path)
    commit()


@torch.no_grad()
def _evaluate(model: Any, ds: WindowDataset, config: Config, batch_size: int) -> dict[str, float | int]:
    """Window metrics (AUROC, sensitivity, false alarms per 24 h) and event metrics (SzCORE, by timescoring) of the
    eval split, as the baseline reports them."""
    model.eval()
    scores = np.concatenate([torch.softmax(model(x), dim=1)[:, 1].numpy() for x, _ in window_loader(ds, batch_size)])
    split = config.train.eval_split
    windows = detection_metrics(ds.window_labels, scores, config.train.threshold, config.train.stride_s, split)
    return {**windows, **dataset_event_metrics(ds, scores >= config.train.threshold, split)}
