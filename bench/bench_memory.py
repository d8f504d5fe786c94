"""Memory benchmark: peak RSS and wall time of processing one long recording, before and after issue 13.

Writes with edfio two long recordings in the TUH channel layout (the 19 10-20 electrodes and A1/A2 as ``EEG xx-REF``,
``EEG EKG1-REF`` and ``PHOTIC-REF`` at the EEG rate, ``IBI``/``BURSTS``/``SUPPR`` at 1 Hz): 3 hours at 256 Hz and
1 hour at 1000 Hz. Each is processed by ``eegcache.core.process.process`` (hash, read, preprocess, write the cache
file) in a fresh Python process, once with the code of :data:`BASELINE_REV` (the whole-recording float64 pipeline,
taken with ``git archive`` from this repository) and once with this tree's code, for both montages. The child reports
its own peak RSS (``ru_maxrss``; the interpreter, numpy and scipy included, as in a build worker) and the wall time of
``process``; the target is the issue's bound, 4 × the EDF's size + 300 MB. Both outputs must be the same bytes.

Run: ``.venv/bin/python bench/bench_memory.py`` (``make bench`` runs it). Works in a temporary directory (``--work``,
``--keep``); writes its results block into bench/README.md (``--no-readme`` to only print).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from edfio import Edf, EdfSignal

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

from bench_remote import say, write_readme

from eegcache import config
from eegcache.core.montage import ELECTRODES, MONTAGES

# The last commit before the per-channel pipeline of issue 13: the code measured as "before".
BASELINE_REV = "6cdaa5c7fca02763499d03e35c50a2b0fe01b4aa"
MARKS = ("<!-- bench-memory:results -->", "<!-- /bench-memory:results -->")
MB = 1e6
SEIZURE = (600.0, 660.0)  # one seizure, s


@dataclass(frozen=True)
class Recording:
    name: str
    hours: float
    rate: int  # Hz of the EEG channels


RECORDINGS = (Recording("3 h, 256 Hz", 3.0, 256), Recording("1 h, 1000 Hz", 1.0, 1000))

# Runs in a fresh interpreter: argv = [task JSON, params JSON, out dir]; prints wall s, peak RSS kB and the output md5.
CHILD = """
import json, resource, sys, time
from pathlib import Path
from eegcache.core import process
fields, params, out = json.loads(sys.argv[1]), json.loads(sys.argv[2]), Path(sys.argv[3])
fields.update(edf=Path(fields["edf"]), annotation=Path(fields["annotation"]), key_parts=tuple(fields["key_parts"]),
              seizures=tuple(map(tuple, fields["seizures"])))
started = time.perf_counter()
entry = process.process(process.Task(**fields), params, out).entry
wall = time.perf_counter() - started
print(json.dumps({"wall_s": wall, "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "md5": entry["md5"]}))
"""


def write_recording(folder: Path, rec: Recording, seed: int) -> tuple[Path, Path]:
    """A TUH-like EDF (1 s data records) of ``rec`` and its ``.csv_bi``; -> (edf, annotation)."""
    rng = np.random.default_rng(seed)
    seconds = int(rec.hours * 3600)
    t = np.arange(seconds * rec.rate) / rec.rate
    common = np.cumsum(rng.standard_normal(t.size)) * 0.05  # slow shared drift
    common -= np.convolve(common, np.ones(rec.rate) / rec.rate, mode="same")
    signals = []
    for k, electrode in enumerate(ELECTRODES):
        x = common + 20 * np.sin(2 * np.pi * (8 + k % 5) * t + k) + 5 * rng.standard_normal(t.size)
        signals.append(
            EdfSignal(x, rec.rate, label=f"EEG {electrode}-REF", physical_dimension="uV", physical_range=(-5000, 5000))
        )
        del x
    for label in ("EEG EKG1-REF", "PHOTIC-REF"):
        signals.append(
            EdfSignal(100 * np.sin(2 * np.pi * 1.2 * t), rec.rate, label=label, physical_range=(-5000, 5000))
        )
    for label in ("IBI", "BURSTS", "SUPPR"):
        signals.append(EdfSignal(np.zeros(seconds), 1, label=label, physical_range=(-1, 1)))
    bname = f"aaaaaaa{seed}_s001_t000"
    edf = folder / f"{bname}.edf"
    Edf(signals).write(edf)
    annotation = edf.with_suffix(".csv_bi")
    annotation.write_text(
        f"# version = csv_v1.0.0\n# bname = {bname}\n# duration = {seconds:.4f} secs\n#\n"
        f"channel,start_time,stop_time,label,confidence\nTERM,0.0000,{SEIZURE[0]:.4f},bckg,1.0000\n"
        f"TERM,{SEIZURE[0]:.4f},{SEIZURE[1]:.4f},seiz,1.0000\nTERM,{SEIZURE[1]:.4f},{seconds:.4f},bckg,1.0000\n"
    )
    return edf, annotation


def baseline_source(work: Path) -> Path:
    """The package as it was at BASELINE_REV, extracted under ``work``; -> its ``src`` folder."""
    target = work / "baseline"
    target.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", BASELINE_REV, "src/eegcache"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target / "src"


def run_child(src: Path, edf: Path, annotation: Path, params: dict, out: Path) -> dict:
    seconds = float(annotation.read_text().split("# duration = ")[1].split()[0])
    task = {
        "edf": str(edf),
        "source": edf.name,
        "rel": f"train/{edf.stem}.npz",
        "split": "train",
        "patient": edf.name[:8],
        "annotation": str(annotation),
        "key_parts": ["p" * 64, "c" * 64, ".csv_bi"],
        "annotation_duration_s": seconds,
        "seizures": [list(SEIZURE)],
    }
    env = {**os.environ, "PYTHONPATH": str(src)}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(task), json.dumps(params), str(out)],
        capture_output=True,
        text=True,
        env=env,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"processing {edf.name} with {src} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(work: Path) -> list[dict]:
    preprocess = dataclasses.asdict(config.load(REPO, local=False).preprocess)
    sources = {"before": baseline_source(work), "after": REPO / "src"}
    rows = []
    for seed, rec in enumerate(RECORDINGS):
        folder = work / f"rec{seed}"
        folder.mkdir()
        # in a process of its own: a child's ru_maxrss starts from its parent's RSS at the fork, so the parent must
        # never hold a recording's arrays
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            edf, annotation = pool.submit(write_recording, folder, rec, seed).result()
        size = edf.stat().st_size
        for montage in MONTAGES:
            params = {**preprocess, "montage": montage}
            row = {
                "recording": rec.name,
                "edf_mb": size / MB,
                "target_mb": (4 * size + 300 * MB) / MB,
                "montage": montage,
            }
            for which, src in sources.items():
                out = work / f"out-{which}-{seed}-{montage}"
                result = run_child(src, edf, annotation, params, out)
                row[which] = result
                shutil.rmtree(out)
                say(
                    f"  {rec.name} {montage} {which}: peak RSS {result['maxrss_kb'] * 1024 / MB:.0f} MB, "
                    f"{result['wall_s']:.1f} s"
                )
            row["identical"] = row["before"]["md5"] == row["after"]["md5"]
            rows.append(row)
        edf.unlink()
    return rows


def table(rows: list[dict], dtype: str) -> str:
    lines = [
        "| recording | EDF MB | montage | peak RSS before | peak RSS after | target (4 × EDF + 300 MB) | verdict | "
        "wall before → after | same output bytes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        before, after = (r[k]["maxrss_kb"] * 1024 / MB for k in ("before", "after"))
        verdict = "PASS" if after <= r["target_mb"] else "FAIL"
        lines.append(
            f"| {r['recording']} | {r['edf_mb']:.0f} | `{r['montage']}` | {before:,.0f} MB ({before / r['edf_mb']:.1f}×) "
            f"| **{after:,.0f} MB** ({after / r['edf_mb']:.1f}×) | {r['target_mb']:,.0f} MB | {verdict} | "
            f"{r['before']['wall_s']:.1f} s → {r['after']['wall_s']:.1f} s | {'yes' if r['identical'] else 'NO'} |"
        )
    channels = ", ".join(ELECTRODES)
    parent = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MB
    return (
        "\n\nCommand: `.venv/bin/python bench/bench_memory.py` (part of `make bench`)\n\n"
        f"Recordings (edfio, 1 s records): EEG {channels} as `EEG xx-REF`, `EEG EKG1-REF` and `PHOTIC-REF` at the EEG "
        "rate, `IBI`/`BURSTS`/`SUPPR` at 1 Hz. Each run is one fresh process calling `process.process` (hash, read, "
        f"preprocess, write the cache file; cache dtype `{dtype}`); peak RSS is the child's `ru_maxrss`, the "
        f"interpreter and libraries included (the benchmark's own process, whose RSS a child starts from, peaked at "
        f'{parent:.0f} MB). "Before" is the code of commit `{BASELINE_REV[:7]}`.\n\n' + "\n".join(lines) + "\n\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, help="work directory (default: a new temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--no-readme", action="store_true", help="print only; leave bench/README.md alone")
    args = parser.parse_args()
    work = (args.work or Path(tempfile.mkdtemp(prefix="bench-memory-"))).absolute()
    work.mkdir(parents=True, exist_ok=True)
    try:
        rows = measure(work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    block = table(rows, config.load(REPO, local=False).preprocess.dtype)
    say(block)
    if not args.no_readme:
        # the marks go back around the block, so the next run replaces it instead of appending a section
        write_readme(f"{MARKS[0]}{block}{MARKS[1]}", MARKS, title="Memory: one long recording (`bench_memory.py`)")
        say("results written to bench/README.md")
    if not all(r["identical"] for r in rows):
        sys.exit("the per-channel pipeline's output differs from the baseline's")


if __name__ == "__main__":
    main()
