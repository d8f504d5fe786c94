"""The build source's estimate walks any corpus as the build would: any depth, no linked folder, no traceback."""

from __future__ import annotations

import dataclasses
import os

from eegcache import config
from eegcache.volume.resolve import build_estimate
from tests.conftest import REPO


def test_the_estimate_walks_any_depth_and_counts_no_dangling_link_or_linked_folder(tmp_path):
    corpus = tmp_path / "corpus"
    deep = corpus
    for _ in range(1200):  # 1,200 folders deep: rglob's recursion stopped at ~1,000
        deep = deep / "d"
        deep.mkdir(parents=deep.parent == corpus)
    (deep / "a_s001_t000.edf").write_bytes(b"x" * 100)
    (corpus / "b_s001_t000.EDF").write_bytes(b"y" * 50)
    os.symlink(tmp_path / "nowhere.edf", corpus / "c_s001_t000.edf")  # dangling: the build skips it
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "d_s001_t000.edf").write_bytes(b"z" * 1000)
    os.symlink(tmp_path / "elsewhere", corpus / "linked")  # a linked folder is not entered
    base = config.load(REPO, local=False)
    cfg = dataclasses.replace(base, data=dataclasses.replace(base.data, raw_dir=str(corpus)))
    try:
        files, size, seconds = build_estimate(cfg, tmp_path)
    finally:  # pytest's own cleanup (shutil.rmtree) recurses per folder: take the deep ones down from the bottom
        (deep / "a_s001_t000.edf").unlink()
        while deep != corpus:
            deep.rmdir()
            deep = deep.parent
    assert (files, size) == (2, 150) and seconds == 150 / 1e9 * cfg.cache.build_seconds_per_gb
