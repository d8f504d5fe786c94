"""eegcache.torch with real torch: the balanced sampler's exact resume, and DataLoaders that yield every window once."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numpy.testing import assert_array_equal
from torch.utils.data import DataLoader

from eegcache.torch import BucketSampler, window_loader
from eegcache.train.dataset import WindowDataset
from tests.unit.test_dataset import recording, write_cache


@pytest.fixture(scope="module")
def ds(tmp_path_factory) -> WindowDataset:
    recs = {
        f"train/aaaaaaa{c}_s001_t000": recording(1200 + 50 * i, i, [(100 * i, 100 * i + 300)])
        for i, c in enumerate("bcdefg")
    }
    return WindowDataset(write_cache(tmp_path_factory.mktemp("cache"), recs), "train", 4.0, 1.0, dtype="float16")


def test_the_order_is_a_function_of_seed_and_epoch_and_follows_the_weights(ds):
    a, b = BucketSampler(ds, seed=7, num_samples=3000), BucketSampler(ds, seed=7, num_samples=3000)
    a.set_epoch(2)
    b.set_epoch(2)
    assert list(a) == list(b) and list(a) == list(b)  # a second pass without set_epoch repeats the epoch
    b.set_epoch(3)
    assert list(a) != list(b)
    assert list(BucketSampler(ds, seed=8, num_samples=3000)) != list(BucketSampler(ds, seed=7, num_samples=3000))
    drawn = np.array(list(a))
    for name, share in {"none": 0.5, "partial": 0.25, "seizure": 0.25}.items():
        assert np.isin(drawn, ds.buckets[name]).mean() == pytest.approx(share, abs=0.03)
    assert len(BucketSampler(ds)) == len(ds)


@pytest.mark.parametrize("taken", [0, 1, 37, 199, 200])
def test_a_sampler_loaded_from_a_state_yields_exactly_the_indices_left(ds, taken):
    first = BucketSampler(ds, seed=3, num_samples=200)
    first.set_epoch(5)
    whole = first.order()
    stream = iter(first)
    seen = [next(stream) for _ in range(taken)]
    state = first.state_dict(consumed=taken)
    resumed = BucketSampler(ds, seed=3, num_samples=200)
    resumed.load_state_dict(state)
    rest = list(resumed)
    assert seen + rest == whole.tolist() and len(rest) == 200 - taken
    assert len(BucketSampler(ds, seed=3, num_samples=200)) == 200


def test_a_state_from_the_loop_with_workers_ahead_and_from_another_draw(ds):
    sampler = BucketSampler(ds, seed=1, num_samples=64)
    stream = iter(sampler)
    for _ in range(40):  # the loader's workers asked for 40 indices; the loop trained on 32
        next(stream)
    resumed = BucketSampler(ds, seed=1, num_samples=64)
    resumed.load_state_dict(sampler.state_dict(consumed=32))
    assert list(resumed) == sampler.order()[32:].tolist()
    with pytest.raises(ValueError, match="another draw"):
        BucketSampler(ds, seed=2, num_samples=64).load_state_dict(sampler.state_dict())
    with pytest.raises(ValueError, match="consumed=65"):
        sampler.state_dict(consumed=65)


@pytest.mark.parametrize("workers", [0, 2])
def test_the_window_loader_yields_every_window_once_as_tensors(ds, workers):
    loader = window_loader(ds, batch_size=16, num_workers=workers)
    xs, ys = zip(*loader, strict=True)
    assert all(isinstance(x, torch.Tensor) and x.dtype == torch.float16 for x in xs)
    x, y = torch.cat(xs).numpy(), torch.cat(ys).numpy()
    assert len(x) == len(ds) and x.shape[1:] == (4, 200)
    expected_x, expected_y = ds[range(len(ds))]
    assert_array_equal(x, expected_x)
    assert_array_equal(y, expected_y)


def test_a_plain_dataloader_with_two_workers_and_the_balanced_sampler_yields_its_draw(ds):
    sampler = BucketSampler(ds, seed=4, num_samples=96)
    batches = list(DataLoader(ds, batch_size=32, sampler=sampler, num_workers=2))  # __getitems__ per batch
    x = torch.cat([b[0] for b in batches]).numpy()
    order = sampler.order()
    assert x.shape == (96, 4, 200)
    assert_array_equal(x, ds[order][0])
    plain = list(DataLoader(ds, batch_size=8, num_workers=2))
    assert_array_equal(torch.cat([b[1] for b in plain]).numpy(), ds[range(len(ds))][1])
