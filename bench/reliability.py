"""Reliability figures: run the fault tests with many kills per operation and tabulate every case.

Run: ``.venv/bin/python bench/reliability.py [--kills N]`` (``make stress`` runs it with 10). It runs
``tests/integration/test_faults.py``, ``test_bad_input.py`` and ``test_trust_boundaries.py`` with ``EEGCACHE_KILLS=N`` and
``EEGCACHE_FAULT_LOG`` set, then writes the table (cases tried, detected, recovered, lost) into bench/README.md.
A failing case fails the run: the table only ever shows a green run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

from bench_remote import write_readme

MARKS = ("<!-- reliability:results -->", "<!-- /reliability:results -->")
TESTS = (
    "tests/integration/test_faults.py",
    "tests/integration/test_bad_input.py",
    "tests/integration/test_trust_boundaries.py",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10, help="SIGKILLs per operation")
    parser.add_argument("--no-readme", action="store_true", help="print only; leave bench/README.md alone")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "faults.jsonl"
        env = {**os.environ, "EEGCACHE_KILLS": str(args.kills), "EEGCACHE_FAULT_LOG": str(log)}
        started = time.perf_counter()
        tests = [t for t in TESTS if (REPO / t).exists()]
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests], cwd=REPO, env=env
        )
        seconds = time.perf_counter() - started
        rows = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    if proc.returncode != 0:
        print(f"fault tests failed (exit {proc.returncode}); no table written", file=sys.stderr)
        return proc.returncode
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        groups[row["operation"]].append(row)
    lines = [
        MARKS[0],
        "",
        f"Command: `.venv/bin/python bench/reliability.py --kills {args.kills}` (`make stress`); "
        f"{len(rows)} cases in {seconds:.0f} s.",
        "",
        "| operation | cases tried | detected | recovered | lost | of which killed mid-run |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for operation, cases in groups.items():
        midway = sum(1 for c in cases if c.get("killed_midway"))
        lines.append(
            f"| {operation} | {len(cases)} | {sum(c['detected'] for c in cases)} | "
            f"{sum(c['recovered'] for c in cases)} | {sum(c['lost'] for c in cases)} | "
            f"{midway if any('killed_midway' in c for c in cases) else '—'} |"
        )
    lines += ["", "Cases:", ""] + [f"- {r['operation']}: {r['case']}" for r in rows] + ["", MARKS[1]]
    block = "\n".join(lines)
    print(block)
    if not args.no_readme:
        write_readme(block, MARKS, "Reliability: kills, corruption, bad input")
    return 0


if __name__ == "__main__":
    sys.exit(main())
