"""Resolver benchmark: warm start (the version already on the volume, 6,500 files) with `fast` validation, and
`deep` validation throughput against single-pass hashing of the same files, pages dropped first.

Run: ``.venv/bin/python bench/bench_resolve.py`` (``make bench`` runs it). Works in a temporary directory; writes
its results block into bench/README.md. The cold start from S3 is measured in ``bench_remote.py``, next to s5cmd.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_remote import BIN, Check, in_work_dir, machine_facts, make_project, say, sh, write_readme

from eegcache.versions import dvc

FILES = 6_500
SAMPLES = (600, 1_400)  # per recording: 19 channels of float16, 23-53 kB each
RUNS = 7
MARKS = ("<!-- bench-resolve:results -->", "<!-- /bench-resolve:results -->")


def drop_pages(paths: list[Path]) -> None:
    """Evict the files' clean pages from the page cache, so the next read comes from the disk."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fdatasync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def md5_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb", buffering=0) as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def resolve_cli(root: Path, vol: Path, *overrides: str) -> tuple[float, dict]:
    """One whole ``eegcache resolve`` process: (wall seconds, its JSON report)."""
    started = time.perf_counter()
    proc = sh(
        str(BIN / "eegcache"),
        "resolve",
        "--repo",
        str(root),
        "--json",
        "-",
        f"cache.volume_root={vol}",
        *overrides,
        cwd=root,
    )
    return time.perf_counter() - started, json.loads(proc.stdout)


def run(work: Path) -> tuple[list[Check], str, list[str]]:
    notes: list[str] = []
    root = work / "project"
    say(f"1. project with a synthetic cache of {FILES} recordings")
    started = time.perf_counter()
    make_project(root, None, np.random.default_rng(0), count=FILES, samples=SAMPLES)
    version = dvc.version_at(root)
    say(
        f"  {version.nfiles} files, {version.size / 1e6:.0f} MB, as {version.hash} in {time.perf_counter() - started:.0f} s"
    )

    say("2. install it on the volume from a directory with the remote's layout (the mount source)")
    vol = work / "volume"
    install_s, report = resolve_cli(root, vol, "cache.sources=[mount]", f"cache.mount_point={root / '.dvc' / 'cache'}")
    assert report["source"] == "mount" and report["files"] == FILES, report
    say(f"  {install_s:.2f} s ({report['seconds']:.2f} s in-process), {report['bytes'] / 1e6:.0f} MB moved")

    say(f"3. warm start, fast validation: {RUNS} whole `eegcache resolve cache=volume_first` processes")
    warm = []
    for _ in range(RUNS):
        seconds, report = resolve_cli(root, vol, "cache=volume_first")
        assert report["source"] == "volume" and report["bytes"] == 0, report
        warm.append((seconds, report["seconds"]))
    say("  " + ", ".join(f"{w:.2f} s ({i:.3f} s in-process)" for w, i in warm))
    python_s = min(sh_time(sys.executable, "-c", "pass", cwd=work) for _ in range(3))

    say("4. deep validation against single-pass hashing, pages dropped before each")
    version_dir = Path(report["path"])
    paths = sorted(p for p in version_dir.rglob("*") if p.is_file())
    size = sum(p.stat().st_size for p in paths)
    drop_pages(paths)
    started = time.perf_counter()
    for path in paths:
        md5_file(path)
    single = time.perf_counter() - started
    drop_pages(paths)
    threads = len(os.sched_getaffinity(0))
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(md5_file, paths))
    parallel = time.perf_counter() - started
    drop_pages(paths)
    deep_s, report = resolve_cli(root, vol, "cache=volume_first", "cache.validation=deep")
    assert report["source"] == "volume", report
    deep_in = report["seconds"]
    say(
        f"  md5 1 thread {single:.2f} s, {threads} threads {parallel:.2f} s; deep resolve {deep_s:.2f} s "
        f"({deep_in:.2f} s in-process)"
    )

    mb = size / 1e6
    median_warm = statistics.median(w for w, _ in warm)
    checks = [
        Check(
            f"install from the mount stand-in ({FILES} files, {mb:.0f} MB), whole process",
            f"{install_s:.2f} s",
            "",
            None,
        ),
        Check(
            f"warm start, `fast`: whole `eegcache resolve` process, median of {RUNS} (max)",
            f"**{median_warm:.2f} s** ({max(w for w, _ in warm):.2f} s)",
            "≤ 1 s",
            median_warm <= 1.0,
        ),
        Check(
            "same, inside the process (`resolve()`: version from dvc.lock, checks, report), median",
            f"{statistics.median(i for _, i in warm):.3f} s",
            "",
            None,
        ),
        Check("Python start alone (`python -c pass`), best of 3", f"{python_s:.2f} s", "", None),
        Check(
            f"single-pass md5 of the version's files from disk, 1 thread / {threads} threads",
            f"{mb / single:.0f} / {mb / parallel:.0f} MB/s ({single:.2f} / {parallel:.2f} s)",
            "",
            None,
        ),
        Check(
            "`deep` validation from disk: whole `eegcache resolve cache.validation=deep` process (in-process)",
            f"{mb / deep_s:.0f} MB/s ({deep_s:.2f} s; {deep_in:.2f} s in-process) = "
            f"**{single / deep_in:.2f}×** single-pass speed",
            "≥ 0.8×",
            single / deep_in >= 0.8,
        ),
    ]
    data_line = (
        f"synthetic, {FILES} recordings of {SAMPLES[0]}-{SAMPLES[1]} samples (19 channels, float16, random) + "
        f"metadata = {version.nfiles} files, {mb:.0f} MB, committed with `dvc commit build_cache`, installed "
        "on a volume directory (same filesystem, hard links into the volume's DVC cache)."
    )
    notes.append("Pages are dropped with `posix_fadvise(DONTNEED)` per file; on a shared machine some may stay cached.")
    return checks, data_line, notes


def sh_time(*args: str, cwd: Path) -> float:
    started = time.perf_counter()
    sh(*args, cwd=cwd)
    return time.perf_counter() - started


def render(
    command: str,
    checks: list[Check],
    data_line: str,
    notes: list[str],
    marks: tuple[str, str] = MARKS,
    after: str = "bench_remote.py",
) -> str:
    """The results block between ``marks``: command, machine, data, the checks' table, notes."""
    lines = [marks[0], "", f"Command: `{command}` (what `make bench` runs after `{after}`)", "", "Machine:", ""]
    lines += [f"- {name}: {value}" for name, value in machine_facts()]
    lines += ["", f"Data: {data_line}", "", "| measure | result | target | verdict |", "|---|---|---|---|"]
    lines += [f"| {c.name} | {c.value} | {c.target} | {c.verdict or '—'} |" for c in checks]
    lines += [""] + [f"- {note}" for note in notes] + ["", marks[1]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, help="work directory (default: a new temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--no-readme", action="store_true", help="print only; leave bench/README.md alone")
    args = parser.parse_args(argv)
    command = " ".join([".venv/bin/python bench/bench_resolve.py", *(argv or sys.argv[1:])])
    checks, data_line, notes = in_work_dir(args, "eegcache-bench-resolve-", run)
    if not args.no_readme:
        write_readme(render(command, checks, data_line, notes), MARKS, "Resolve: warm start and deep validation")
        say("results written to bench/README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
