"""What ``dvc.lock`` says a version is: a readable lock gives the version and its params; anything else, whatever
its bytes, is a LockfileError naming the file (the CLI's exit 2), never a traceback."""

from __future__ import annotations

import pytest

from eegcache import trust
from eegcache.versions import lockfile

HASH = "0123456789abcdef0123456789abcdef.dir"
GOOD = f"""schema: '2.0'
stages:
  build_cache:
    params:
      params.yaml:
        preprocess:
          dtype: float16
    outs:
    - path: cache/tusz
      md5: {HASH}
      size: 1234
      nfiles: 7
"""


def test_a_readable_lock_names_the_version_and_its_flat_params():
    version = lockfile.parse(GOOD.encode(), None, "dvc.lock")
    assert (version.rev, version.hash, version.size, version.nfiles) == ("workspace", HASH, 1234, 7)
    assert version.params == {"preprocess.dtype": "float16"} and version.dirname == HASH.removesuffix(".dir")


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\xff\xfe not utf-8", "not a readable dvc.lock"),
        (GOOD.replace("nfiles: 7", "nfiles: .inf").encode(), "not a readable dvc.lock"),
        (("[" * 100_000 + "]" * 100_000).encode(), "not a readable dvc.lock"),
        (b"stages: [1, 2]", "not a readable dvc.lock"),
        (b"stages: {}", "no directory output of stage build_cache"),
    ],
)
def test_anything_else_is_a_lockfile_error_naming_the_file(data, why):
    with pytest.raises(lockfile.LockfileError, match=why) as caught:
        lockfile.parse(data, "cache-v1", "dvc.lock at cache-v1")
    assert caught.value.path == "dvc.lock at cache-v1"


def test_a_hash_that_is_no_object_id_stops_at_the_gate():
    with pytest.raises(trust.UnsafeName, match="is not a DVC object id") as caught:
        lockfile.parse(GOOD.replace(HASH, "../../etc.dir"), None, "dvc.lock")
    assert caught.value.path == "dvc.lock"
