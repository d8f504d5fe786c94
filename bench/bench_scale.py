"""Full-scale figures without the data: a TUSZ v2.0.3-sized corpus layout and cache, fabricated (``fabricate_tusz``).

What it measures at the scale of the real corpus (7,361 recordings, 1,473.6 h), on files that discovery, planning,
``verify``, ``resolve`` and ``WindowDataset`` treat exactly as real ones (they never read EEG samples):

1. discovery + planning: ``builder.plan.make_plan`` on the fabricated layout (discovery, official splits, parsing 7,361
   ``.csv_bi`` annotations), and ``corpus.discover`` alone;
2. the cache a build would make, for ``ref19`` and ``tcp22``: its metadata's size, its bytes per hour of EEG and in
   all (the files are real cache files of the real size whose EEG is a hole in a sparse file), next to the size
   model (channels x 200 Hz x 3,600 s x 2 bytes + 1 label byte per sample) and to files of a real build;
3. fast ``verify`` of the ``ref19`` cache; a warm ``resolve`` of it from a volume that holds it (``cache.version``
   named, ``cache=volume_first``): ``verify.verify_version``, ``resolve()`` in-process and a whole ``eegcache
   resolve`` process; ``WindowDataset`` start-up per split (60 s windows, 10 s stride);
4. a projected full build: build throughput (hours of EEG per CPU-second, ``build.workers=1``, user + system time
   of this process and its worker from ``getrusage``) on a demo corpus, times 1,473.6 h -> CPU-hours, and wall time
   on 2 cores and on 32 Modal containers of 2 CPUs.

Run: ``.venv/bin/python bench/bench_scale.py`` (``make bench`` runs it; ``--work DIR --keep`` keeps the files).
Its results go into bench/README.md between the ``bench-scale:results`` markers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_remote import BIN, REPO, Check, client_cpu, in_work_dir, say, sh, write_readme
from bench_resolve import render
from fabricate_tusz import TUSZ_V203, CorpusFacts, plan_layout, write_cache, write_layout, write_zero_recording

from eegcache import config
from eegcache.builder.plan import make_plan
from eegcache.builder.run import run_build
from eegcache.core import corpus, store
from eegcache.devtools.demo import write_demo_corpus
from eegcache.train.dataset import WindowDataset
from eegcache.versions import objects, verify
from eegcache.volume import layout, resolve

MARKS = ("<!-- bench-scale:results -->", "<!-- /bench-scale:results -->")
MONTAGES = ("ref19", "tcp22")
RUNS = 5
DEMO = {"patients_per_split": 2, "seed": 0, "minutes": (10.0, 20.0)}  # the throughput corpus (bench_build.py's)
CONTAINERS, CPUS_PER_CONTAINER = 32, 2


def timed(fn: Callable[[], object], runs: int = RUNS) -> tuple[list[float], object]:
    """Wall seconds of ``runs`` calls of ``fn`` and the last result."""
    seconds, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = fn()
        seconds.append(time.perf_counter() - started)
    return seconds, result


def first_median(seconds: list[float]) -> str:
    return f"**{seconds[0]:.3f} s** ({statistics.median(seconds):.3f} s)"


def build_config(raw_dir: Path, work: Path, name: str, *overrides: str) -> config.Config:
    return config.load(
        REPO,
        [
            f"data.raw_dir={raw_dir}",
            f"build.out_dir={work / name}",
            f"build.state_dir={work / (name + '_state')}",
            f"build.metrics_file={work / (name + '_metrics.json')}",
            "build.progress=false",
            *overrides,
        ],
        local=False,
    )


def bench_plan(work: Path, facts: CorpusFacts) -> dict:
    recordings = plan_layout(facts, seed=0)
    corpus_dir = work / "corpus"
    started = time.perf_counter()
    write_layout(recordings, corpus_dir, facts.raw_bytes)
    say(f"  {len(recordings)} recordings written in {time.perf_counter() - started:.1f} s")
    cfg = build_config(corpus_dir, work, "plan_cache")
    discover_s, refs = timed(lambda: corpus.discover(corpus_dir))
    plan_s, plan = timed(lambda: make_plan(cfg, Path()))
    assert len(refs) == len(plan.tasks) == facts.files and not plan.skipped, (len(refs), len(plan.tasks))
    say(f"  discover: {first_median(discover_s)}; make_plan: {first_median(plan_s)}")
    return {"recordings": recordings, "discover": discover_s, "plan": plan_s}


def bench_cache(recordings: list, work: Path, name: str) -> dict:
    cache_dir = work / f"cache_{name}"
    started = time.perf_counter()
    metadata = write_cache(recordings, cache_dir, [f"preprocess={name}"])
    written_s = time.perf_counter() - started
    paths = [cache_dir / rel for rel in metadata["files"]]
    disk = sum(p.stat().st_blocks * 512 for p in paths)
    size = sum(e["size"] for e in metadata["files"].values())
    hours = sum(s["seconds"] for s in metadata["splits"].values()) / 3600
    meta_bytes = (cache_dir / store.METADATA_NAME).stat().st_size
    say(
        f"  {name}: {len(paths)} files, {size / 1e9:.2f} GB ({disk / 1e6:.0f} MB on disk), {hours:.1f} h, "
        f"metadata {meta_bytes / 1e6:.2f} MB; written and hashed in {written_s:.0f} s"
    )
    return {
        "dir": cache_dir,
        "metadata": metadata,
        "bytes": size,
        "disk": disk,
        "hours": hours,
        "meta_bytes": meta_bytes,
        "channels": len(metadata["channels"]),
    }


def bench_readers(cache: dict, work: Path) -> dict:
    cache_dir, metadata = cache["dir"], cache["metadata"]
    files = len(metadata["files"])
    load = os.getloadavg()[0]
    verify_s, verdict = timed(lambda: verify.verify(cache_dir, deep=False))
    assert verdict.ok and verdict.files == files, verdict.problems[:3]
    say(f"  fast verify: {first_median(verify_s)}")

    version = objects.tree_hash((cache_dir / store.METADATA_NAME).read_bytes(), metadata["files"])
    vol = work / "volume"
    target = layout.versions_root(vol) / objects.dirname(version)
    for path in [cache_dir / store.METADATA_NAME, *(cache_dir / rel for rel in metadata["files"])]:
        (target / path.relative_to(cache_dir)).parent.mkdir(parents=True, exist_ok=True)
        os.link(path, target / path.relative_to(cache_dir))  # what install.install's checkout leaves: hard links
    check_s, check = timed(lambda: verify.verify_version(target, version))
    assert check.ok and check.files == files, check.problems[:3]
    overrides = ["cache=volume_first", f"cache.version={version}", f"cache.volume_root={vol}"]
    cfg = config.load(REPO, overrides, local=False)
    resolve_s, report = timed(lambda: resolve.resolve(cfg, REPO, say=lambda _: None))
    assert report.source == "volume" and report.files == files, report
    process_s = []
    for _ in range(RUNS):
        started = time.perf_counter()
        out = sh(str(BIN / "eegcache"), "resolve", "--repo", str(REPO), "--json", "-", *overrides, cwd=work)
        process_s.append(time.perf_counter() - started)
        assert json.loads(out.stdout)["source"] == "volume"
    imports_s, _ = timed(lambda: sh(sys.executable, "-c", "import eegcache.cli, eegcache.volume.resolve", cwd=work))
    say(
        f"  verify_version: {first_median(check_s)}; resolve(): {first_median(resolve_s)}; "
        f"`eegcache resolve`: {first_median(process_s)}; Python + imports alone: {first_median(imports_s)}"
    )

    startup = {}
    for split in sorted(metadata["splits"]):
        seconds, dataset = timed(lambda split=split: WindowDataset(target, split, window_s=60, stride_s=10))
        startup[split] = (seconds, len(dataset))
        say(f"  WindowDataset {split}: {len(dataset):,} windows, start-up {first_median(seconds)}")
    return {
        "verify": verify_s,
        "check": check_s,
        "resolve": resolve_s,
        "process": process_s,
        "imports": imports_s,
        "startup": startup,
        "version": version,
        "load": load,
    }


def bench_throughput(work: Path) -> dict:
    corpus_dir = work / "demo"
    started = time.perf_counter()
    edfs = write_demo_corpus(corpus_dir, **DEMO)
    say(f"  demo corpus: {len(edfs)} recordings in {time.perf_counter() - started:.0f} s")
    results = {}
    for name in MONTAGES:
        cfg = build_config(corpus_dir, work, f"demo_{name}", f"preprocess={name}", "build.workers=1")
        load = os.getloadavg()[0]
        cpu, wall = client_cpu(), time.perf_counter()
        summary = run_build(cfg)
        cpu, wall = client_cpu() - cpu, time.perf_counter() - wall
        hours = sum(s["seconds"] for s in summary.metadata["splits"].values()) / 3600
        results[name] = {
            "hours": hours,
            "cpu": cpu,
            "wall": wall,
            "rate": hours / cpu,
            "load": load,
            "model": size_model_check(summary.cache_dir, summary.metadata, work / "model.npz"),
        }
        say(
            f"  {name}: {summary.processed} recordings, {hours:.2f} h in {wall:.1f} s wall, {cpu:.1f} CPU-s = "
            f"{hours / cpu:.2f} h per CPU-s"
        )
    return {"recordings": len(edfs), **results}


def size_model_check(cache_dir: Path, metadata: dict, scratch: Path) -> tuple[int, int, float]:
    """(built files whose size equals the fabricated file's for the same samples and facts, files, their MB per
    hour of EEG)."""
    same = 0
    for rel, entry in metadata["files"].items():
        recording = store.open_recording(cache_dir / rel, mmap=True)
        size = write_zero_recording(scratch, recording.labels, recording.facts, metadata["dtype"])
        same += size == entry["size"]
    hours = sum(e["seconds"] for e in metadata["files"].values()) / 3600
    return same, len(metadata["files"]), sum(e["size"] for e in metadata["files"].values()) / 1e6 / hours


def run(work: Path, facts: CorpusFacts = TUSZ_V203) -> tuple[list[Check], str, list[str]]:
    say("1. the fabricated layout, discovery and planning")
    planned = bench_plan(work, facts)
    say("2. the caches a build would make")
    caches = {name: bench_cache(planned["recordings"], work, name) for name in MONTAGES}
    say("3. verify, warm resolve and WindowDataset on the ref19 cache")
    readers = bench_readers(caches["ref19"], work)
    say("4. build throughput on a demo corpus (build.workers=1)")
    rates = bench_throughput(work)

    hours = facts.hours
    checks = [
        Check(
            f"discovery + planning, `builder.plan.make_plan` ({facts.files:,} EDFs, annotations parsed), first (median "
            f"of {RUNS})",
            first_median(planned["plan"]),
            "",
            None,
        ),
        Check("of which discovery alone, `corpus.discover`", first_median(planned["discover"]), "", None),
    ]
    for name, c in caches.items():
        per_hour = c["bytes"] / c["hours"] / 1e6
        model = (c["channels"] * 2 + 1) * 200 * 3600 / 1e6
        checks += [
            Check(
                f"`{name}` cache: bytes per hour of EEG (model: {c['channels']} ch x 200 Hz x 3,600 s x 2 B + labels)",
                f"{per_hour:.2f} MB (model {model:.2f} MB)",
                "",
                None,
            ),
            Check(
                f"`{name}` cache for {c['hours']:,.1f} h: recordings + metadata",
                f"**{(c['bytes'] + c['meta_bytes']) / 1e9:.1f} GB** ({len(c['metadata']['files']):,} files)",
                "",
                None,
            ),
            Check(
                f"`{name}` metadata (`.cache_metadata.json`, {len(c['metadata']['files']):,} entries)",
                f"{c['meta_bytes'] / 1e6:.2f} MB",
                "",
                None,
            ),
        ]
    n = len(caches["ref19"]["metadata"]["files"])
    checks += [
        Check(
            f"fast verify of the {n:,}-file `ref19` cache, first (median of {RUNS}; load average "
            f"{readers['load']:.1f} before)",
            first_median(readers["verify"]),
            "≤ 1 s",
            readers["verify"][0] <= 1,
        ),
        Check(
            "warm resolve: `verify.verify_version` (version hash of the metadata + fast verify)",
            first_median(readers["check"]),
            "",
            None,
        ),
        Check(
            "warm resolve: `resolve.resolve()` in-process, `cache=volume_first`",
            first_median(readers["resolve"]),
            "",
            None,
        ),
        Check(
            f"warm resolve: a whole `eegcache resolve` process, first (median of {RUNS})",
            first_median(readers["process"]),
            "≤ 1 s",
            statistics.median(readers["process"]) <= 1,
        ),
        Check(
            "of which Python start and imports (`python -c 'import eegcache.cli, eegcache.volume.resolve'`)",
            first_median(readers["imports"]),
            "",
            None,
        ),
    ]
    for split, (seconds, windows) in readers["startup"].items():
        checks.append(
            Check(
                f"`WindowDataset` start-up, {split} ({windows:,} windows of 60 s, stride 10 s)",
                first_median(seconds),
                "",
                None,
            )
        )
    for name in MONTAGES:
        r = rates[name]
        cpu_h = hours / r["rate"] / 3600
        same, total, per_hour = r["model"]
        checks += [
            Check(
                f"build throughput per core, `{name}`, `build.workers=1` ({r['hours']:.2f} h demo EEG)",
                f"{r['rate']:.2f} h EEG per CPU-s ({r['cpu']:.1f} CPU-s; load average {r['load']:.1f} before)",
                "",
                None,
            ),
            Check(
                f"projected full build of {hours:,.1f} h, `{name}`: CPU time / wall on 2 cores / on "
                f"{CONTAINERS} containers x {CPUS_PER_CONTAINER} CPUs",
                f"**{cpu_h:.2f} CPU-h** / {cpu_h / 2 * 60:.0f} min / "
                f"{cpu_h / (CONTAINERS * CPUS_PER_CONTAINER) * 60:.1f} min",
                "",
                None,
            ),
            Check(
                f"size model against the demo build's `{name}` files: sizes equal / files (their MB per hour)",
                f"{same} / {total} ({per_hour:.2f} MB)",
                f"= {total}",
                same == total,
            ),
        ]
    data_line = (
        f"fabricated by `fabricate_tusz.py` (seed 0): {facts.files:,} recordings in the TUSZ v2.0.3 layout, "
        + ", ".join(
            f"{name} {s.files:,} EDFs / {s.patients} patients / {s.hours} h / {s.seizure_hours} h seizures"
            for name, s in facts.splits.items()
        )
        + "; montage folders "
        + ", ".join(f"`{k}` {v:,}" for k, v in facts.montages.items())
        + f"; {facts.no_midline} without FZ/PZ; EDFs sparse ({facts.raw_bytes / 1e9:.1f} GB apparent), "
        f"`.csv` and `.csv_bi` real; caches with every file of its real size, EEG a hole "
        f"(`ref19` {caches['ref19']['disk'] / 1e6:.0f} MB on disk). Throughput corpus: "
        f"`write_demo_corpus(**{DEMO})`, {rates['recordings']} recordings."
    )
    notes = [
        f"Version on the volume: `{readers['version']}`, installed as `install.install`'s checkout leaves it (hard "
        "links into `<volume>/cache/tusz/<hash>/`); fetching it is what `bench_remote.py` measures.",
        "Projection: CPU time = 1,473.6 h / throughput; wall = CPU time / cores (perfect scaling; bench_build.py "
        "measures 1.81x from 1 to 2 workers), without start-up, data transfer or the longest recording's tail.",
        "Throughput is that of the per-recording pipeline of this commit (channel blocks of issue 13).",
        "The EDFs' md5s in the metadata's `raw_digest` are stand-ins (the sparse EDFs are never read); every cache "
        "file's md5 and size is its own.",
    ]
    return checks, data_line, notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, help="work directory (default: a new temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--no-readme", action="store_true", help="print only; leave bench/README.md alone")
    parser.add_argument("--scale", type=float, default=1.0, help="a corpus this many times TUSZ's (a trial run)")
    args = parser.parse_args(argv)
    command = ".venv/bin/python bench/bench_scale.py"  # --work and --keep change where, not what: no paths in README
    facts = TUSZ_V203 if args.scale == 1 else TUSZ_V203.scaled(args.scale)
    checks, data_line, notes = in_work_dir(args, "eegcache-bench-scale-", lambda work: run(work, facts))
    if not args.no_readme and args.scale == 1:
        block = render(command, checks, data_line, notes, MARKS, after="bench_resolve.py")
        write_readme(block, MARKS, "Full scale: a TUSZ-sized layout and cache")
        say("results written to bench/README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
