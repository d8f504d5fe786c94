"""The ``eegcache`` command: thin wrappers that parse arguments and call plain package functions."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from eegcache import config as cfg
from eegcache.errors import EegcacheError

log = logging.getLogger("eegcache")


def _demo_corpus(args: argparse.Namespace) -> int:
    from eegcache.demo import write_demo_corpus

    paths = write_demo_corpus(
        Path(args.out_dir), patients_per_split=args.patients_per_split, seed=args.seed, minutes=tuple(args.minutes)
    )
    print(f"wrote {len(paths)} recordings under {args.out_dir}")
    return 0


def _params(args: argparse.Namespace) -> int:
    cfg.write_params(Path(args.conf), Path(args.params), args.overrides)
    print(f"composed {args.conf}/ into {args.params}")
    return 0


def _build(args: argparse.Namespace) -> int:
    from eegcache.build import run_build
    from eegcache.report import print_summary, summary_table

    config = cfg.load(Path(args.params), args.overrides)
    summary = run_build(config)
    title = f"cache summary — processed {summary.processed}, reused {summary.reused}, in {summary.seconds:.1f} s"
    table = summary_table(summary.metadata, title)
    lines = [f"cache: {summary.cache_dir}"]
    lines += [f"skipped {s['file']}: {s['reason']}" for s in summary.metadata["skipped"]]
    print_summary(table, lines)
    return 0


def _verify(args: argparse.Namespace) -> int:
    from eegcache.validate import verify

    verdict = verify(Path(args.cache_dir), deep=args.deep)
    mode = "deep" if args.deep else "fast"
    if verdict.ok:
        print(f"OK ({mode}): {verdict.cache_dir} holds {verdict.files} files, {verdict.bytes / 1e6:.1f} MB as its metadata says")
        return 0
    print(f"INVALID ({mode}): {verdict.cache_dir}: {len(verdict.problems)} problem(s)")
    for problem in verdict.problems[:50]:
        print(f"  - {problem}")
    if len(verdict.problems) > 50:
        print(f"  ... and {len(verdict.problems) - 50} more")
    return 1


def _summary(args: argparse.Namespace) -> int:
    from eegcache import store
    from eegcache.report import print_summary, summary_table

    metadata = store.read_metadata(Path(args.cache_dir))
    print_summary(summary_table(metadata), [f"cache: {args.cache_dir}"])
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="eegcache", description="Build and check versioned TUSZ EEG caches.")
    top.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = top.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo-corpus", help="write a synthetic corpus in the TUSZ v2.0.3 layout")
    p.add_argument("out_dir")
    p.add_argument("--patients-per-split", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--minutes", type=float, nargs=2, default=(2.0, 4.0), metavar=("MIN", "MAX"))
    p.set_defaults(func=_demo_corpus)

    p = sub.add_parser("params", help="compose conf/ (plus Hydra overrides) into params.yaml")
    p.add_argument("overrides", nargs="*", help="e.g. preprocess=tcp22 build.workers=2")
    p.add_argument("--conf", default="conf")
    p.add_argument("--params", default=cfg.PARAMS_FILE)
    p.set_defaults(func=_params)

    p = sub.add_parser("build", help="build or update the cache (the DVC stage `build_cache`)")
    p.add_argument("overrides", nargs="*", help="value overrides on params.yaml, e.g. data.raw_dir=/path")
    p.add_argument("--params", default=cfg.PARAMS_FILE)
    p.set_defaults(func=_build)

    p = sub.add_parser("verify", help="check a cache against its metadata")
    p.add_argument("cache_dir")
    p.add_argument("--deep", action="store_true", help="also re-hash every file and check its arrays")
    p.set_defaults(func=_verify)

    p = sub.add_parser("summary", help="print a cache's per-split summary from its metadata")
    p.add_argument("cache_dir")
    p.set_defaults(func=_summary)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except EegcacheError as exc:
        print(f"eegcache {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"eegcache {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
