"""PyTorch adapters for :class:`eegcache.train.dataset.WindowDataset`; the only module of eegcache that imports torch
(an optional extra: ``pip install 'eegcache[torch]'``).

- :class:`BucketSampler`: seizure-balanced window indices, an order that depends on (seed, epoch) alone, and a state
  (``state_dict()``/``load_state_dict()``) that resumes mid-epoch exactly: after a preemption the run goes on with
  the very windows it had not trained on yet.
- :func:`window_loader`: a ``DataLoader`` that reads a batch at once (``dataset[list of indices]``), each window
  copied once, straight from the memory maps into the batch, and handed to torch without another copy.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Sampler, SequentialSampler

from eegcache.train.dataset import WindowDataset

BUCKET_WEIGHTS = {"none": 0.5, "partial": 0.25, "seizure": 0.25}  # the baseline's balance (eegcache.train.baseline)


class BucketSampler(Sampler[int]):
    """``num_samples`` window indices per epoch (default: the dataset's length), drawn with replacement so the
    buckets (``none``, ``partial``, ``seizure``: :attr:`WindowDataset.buckets`, by the dataset's label rule) appear
    in ``weights``' proportions; an empty bucket's weight goes to the others, with one warning.

    The order of epoch ``e`` is a function of ``(seed, e)`` only: call :meth:`set_epoch` before each epoch, as with
    torch's ``DistributedSampler``. :meth:`state_dict` says where the epoch is; :meth:`load_state_dict` on a new
    sampler (same dataset, seed, weights, num_samples) yields exactly the indices that were left. The position
    counts the indices this sampler has handed out; a ``DataLoader`` with worker processes asks for batches ahead
    of the loop, so with workers pass the count the loop has trained on: ``state_dict(consumed=batches * size)``.
    """

    def __init__(
        self,
        dataset: WindowDataset,
        seed: int = 0,
        weights: Mapping[str, float] = BUCKET_WEIGHTS,
        num_samples: int | None = None,
    ):
        self.dataset, self.seed, self.weights = dataset, int(seed), dict(weights)
        self.num_samples = len(dataset) if num_samples is None else int(num_samples)
        if self.num_samples < 0 or self.seed < 0:
            raise ValueError(f"num_samples={num_samples!r} and seed={seed!r} must not be negative")
        self.epoch, self.position = 0, 0

    def set_epoch(self, epoch: int) -> None:
        """Start epoch ``epoch`` (its own order) from its beginning."""
        self.epoch, self.position = int(epoch), 0

    def order(self, epoch: int | None = None) -> np.ndarray:
        """Every index of an epoch (default: the current one), in the order they are yielded."""
        rng = np.random.default_rng([self.seed, self.epoch if epoch is None else int(epoch)])
        return self.dataset.balanced_indices(self.num_samples, rng, self.weights)

    def __iter__(self) -> Iterator[int]:
        order = self.order()
        while self.position < len(order):
            self.position += 1
            yield int(order[self.position - 1])
        self.position = 0  # a whole epoch was handed out: iterating again repeats it (call set_epoch for the next)

    def __len__(self) -> int:
        """The indices left in this epoch (all of them at its start)."""
        return self.num_samples - self.position

    def state_dict(self, consumed: int | None = None) -> dict[str, Any]:
        """Where the epoch is: ``consumed`` (the indices the loop has trained on) or, by default, those handed out."""
        position = self.position if consumed is None else int(consumed)
        if not 0 <= position <= self.num_samples:
            raise ValueError(f"consumed={consumed!r}: expected 0 to {self.num_samples} indices of this epoch")
        return {"epoch": self.epoch, "position": position, "seed": self.seed, "num_samples": self.num_samples,
                "weights": dict(self.weights)}  # fmt: skip

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Go on where :meth:`state_dict` was taken; ValueError if it was taken from another kind of draw."""
        mine = {"seed": self.seed, "num_samples": self.num_samples, "weights": self.weights}
        theirs = {key: state.get(key, mine[key]) for key in mine}
        if theirs != mine:
            raise ValueError(f"the state is of another draw ({theirs}); this sampler draws {mine}")
        if not 0 <= int(state["position"]) <= self.num_samples:
            raise ValueError(f"position {state['position']!r} outside this epoch's {self.num_samples} indices")
        self.epoch, self.position = int(state["epoch"]), int(state["position"])


def window_loader(
    dataset: WindowDataset,
    batch_size: int,
    sampler: Sampler[int] | None = None,
    *,
    drop_last: bool = False,
    **loader: Any,
) -> DataLoader:
    """A ``DataLoader`` of ``(x [batch, channels, samples], y [batch, ...])`` tensors: ``sampler``'s indices
    (default: every window in order) in batches of ``batch_size``, each read by ``dataset[indices]`` (one copy per
    window, out of the memory maps) and turned into tensors without another. ``loader``: more ``DataLoader``
    keywords (``num_workers``, ``pin_memory``, ...)."""
    batches = BatchSampler(sampler if sampler is not None else SequentialSampler(dataset), batch_size, drop_last)
    return DataLoader(dataset, batch_size=None, sampler=batches, **loader)


def as_tensors(batch: tuple[np.ndarray, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of :meth:`WindowDataset.__getitem__` (a list of indices) as tensors sharing its memory."""
    return torch.from_numpy(batch[0]), torch.from_numpy(batch[1])
