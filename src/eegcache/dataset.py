"""Moved to :mod:`eegcache.train.dataset`; this name is kept for one release."""

from eegcache.train.dataset import BUCKETS, WindowDataset

__all__ = ["BUCKETS", "WindowDataset"]
