"""Shared fixtures: a tiny demo corpus in the TUSZ layout (written once per session) and configs pointed at tmp_path."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from eegcache import config
from eegcache.devtools import s3local
from eegcache.devtools.demo import write_demo_corpus

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def base_config() -> config.Config:
    """conf/ composed once; tests copy it with their own paths."""
    return config.load(REPO, local=False)  # hermetic: never this machine's conf/local


@pytest.fixture(scope="session")
def demo_corpus(tmp_path_factory) -> Path:
    """A small read-only corpus: 2 patients per split, 1-2 minute recordings."""
    root = tmp_path_factory.mktemp("demo_corpus")
    write_demo_corpus(root, patients_per_split=2, seed=7, minutes=(1.0, 2.0))
    return root


@pytest.fixture
def corpus_copy(demo_corpus, tmp_path) -> Path:
    """A private copy of the demo corpus that a test may change."""
    return Path(shutil.copytree(demo_corpus, tmp_path / "corpus"))


def make_config(base: config.Config, raw_dir: Path, work: Path, **sections) -> config.Config:
    """``base`` with paths under ``work`` and section fields replaced, e.g. build={"workers": 1}."""
    build = dataclasses.replace(
        base.build,
        out_dir=str(work / "cache" / "tusz"),
        metrics_file=str(work / "metrics" / "cache_stats.json"),
        state_dir=str(work / "state"),
        progress=False,
        workers=2,
    )
    cfg = dataclasses.replace(base, data=dataclasses.replace(base.data, raw_dir=str(raw_dir)), build=build)
    for name, fields in sections.items():
        cfg = dataclasses.replace(cfg, **{name: dataclasses.replace(getattr(cfg, name), **fields)})
    return cfg


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real SeaweedFS S3 server for the session: auth on, bucket ``eegcache``, loopback only; stopped at the end.

    Its state directory is ``s3_server.data_dir.parent``; tests that stop or restart a server start their own.
    """

    state_dir = tmp_path_factory.mktemp("s3")
    server = s3local.start(state_dir)
    yield server
    s3local.stop(state_dir, timeout_s=5)
