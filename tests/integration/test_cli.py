"""The `eegcache` command as users run it: build with overrides, verify verdicts, and builds killed midway."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from eegcache.core import store
from tests.conftest import REPO

pytestmark = pytest.mark.integration
EEGCACHE = [sys.executable, "-m", "eegcache.cli"]


def run(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([*EEGCACHE, *args], cwd=cwd, capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"eegcache {args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def build_args(corpus: Path, work: Path, *extra: str) -> list[str]:
    return [
        "build",
        f"data.raw_dir={corpus}",
        f"build.out_dir={work / 'cache'}",
        f"build.state_dir={work / 'state'}",
        f"build.metrics_file={work / 'metrics.json'}",
        *extra,
    ]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A working folder with the repository's conf/ (what `eegcache build` composes)."""
    root = tmp_path_factory.mktemp("project")
    shutil.copytree(REPO / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    return root


@pytest.fixture(scope="module")
def cli_cache(project, demo_corpus) -> Path:
    work = project / "w"
    proc = run(*build_args(demo_corpus, work), cwd=project)
    assert "cache summary" in proc.stdout and "train" in proc.stdout
    return work / "cache"


def test_verify_accepts_a_fresh_build(project, cli_cache):
    assert "OK (fast)" in run("verify", str(cli_cache), cwd=project).stdout
    assert "OK (deep)" in run("verify", str(cli_cache), "--deep", cwd=project).stdout


def corrupt_copy(cache: Path, tmp_path: Path) -> tuple[Path, Path]:
    copy = Path(shutil.copytree(cache, tmp_path / "cache"))
    victim = sorted(copy.rglob("*.npz"))[0]
    return copy, victim


def test_flipped_byte_is_caught_by_deep_only(project, cli_cache, tmp_path):
    copy, victim = corrupt_copy(cli_cache, tmp_path)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    assert run("verify", str(copy), cwd=project).returncode == 0
    deep = run("verify", str(copy), "--deep", cwd=project, check=False)
    assert deep.returncode == 1 and f"{victim.parent.name}/{victim.name}: content hash differs" in deep.stdout


@pytest.mark.parametrize("damage", ["delete", "truncate", "extra", "metadata"])
def test_fast_verify_catches_structural_damage(project, cli_cache, tmp_path, damage):
    copy, victim = corrupt_copy(cli_cache, tmp_path)
    expected = {
        "delete": f"{victim.name}: missing",
        "truncate": f"{victim.name}: 100 bytes, metadata says",
        "extra": "stray.npz: not in the metadata",
        "metadata": "metadata missing",
    }[damage]
    if damage == "delete":
        victim.unlink()
    elif damage == "truncate":
        victim.write_bytes(victim.read_bytes()[:100])
    elif damage == "extra":
        (copy / "train" / "stray.npz").write_bytes(b"x")
    else:
        (copy / store.METADATA_NAME).unlink()
    proc = run("verify", str(copy), cwd=project, check=False)
    assert proc.returncode == 1 and "INVALID (fast)" in proc.stdout and expected in proc.stdout


def test_bad_override_is_one_clear_error(project, demo_corpus, tmp_path):
    proc = run(*build_args(demo_corpus, tmp_path, "preprocess.dtype=float64"), cwd=project, check=False)
    assert proc.returncode == 2
    assert "preprocess.dtype = 'float64'; expected one of float16, float32" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_raw_dir_names_it(project, tmp_path):
    proc = run(*build_args(tmp_path / "nowhere", tmp_path), cwd=project, check=False)
    assert proc.returncode == 2 and "nowhere" in proc.stderr and "Traceback" not in proc.stderr


def journal_lines(cache: Path) -> int:
    try:
        return (cache / store.JOURNAL_NAME).read_text().count("\n")
    except FileNotFoundError:
        return 0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_killed_build_is_never_accepted_and_rerun_completes(project, demo_corpus, cli_cache, tmp_path, seed):
    """SIGKILL the build (and its workers) at a random moment; verify rejects it; a rerun equals a clean build."""
    rng = np.random.default_rng(seed)
    work = tmp_path / "w"
    args = [*EEGCACHE, *build_args(demo_corpus, work, "build.workers=2", "build.progress=false")]
    proc = subprocess.Popen(
        args, cwd=project, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    target = int(rng.integers(1, 6))
    deadline = time.monotonic() + 120
    while journal_lines(work / "cache") < target and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(float(rng.uniform(0, 0.3)))
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    if not (work / "cache" / store.METADATA_NAME).exists():
        assert run("verify", str(work / "cache"), cwd=project, check=False).returncode == 1
    rerun = run(*build_args(demo_corpus, work), cwd=project)
    assert "reused" in rerun.stdout
    files = lambda root: {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()}  # noqa: E731
    assert files(work / "cache") == files(cli_cache)
    assert "OK (deep)" in run("verify", str(work / "cache"), "--deep", cwd=project).stdout
