"""The ``eegcache`` command: thin wrappers that parse arguments and call plain package functions."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sqlite3
import sys
from pathlib import Path

from eegcache import config as cfg
from eegcache.errors import EegcacheError
from eegcache.trust import redact

log = logging.getLogger("eegcache")


def _demo_corpus(args: argparse.Namespace) -> int:
    from eegcache.devtools.demo import write_demo_corpus

    paths = write_demo_corpus(
        Path(args.out_dir), patients_per_split=args.patients_per_split, seed=args.seed, minutes=tuple(args.minutes)
    )
    print(f"wrote {len(paths)} recordings under {args.out_dir}")
    return 0


def _params(args: argparse.Namespace) -> int:
    from eegcache.modal_settings import modal_settings
    from eegcache.workspace import corpus_link, link_corpus

    repo = Path(args.repo)
    tracked = cfg.load(repo, args.overrides, local=False)
    modal_settings(tracked, repo / cfg.CONF_DIR)  # params.yaml: what Modal takes
    corpus_link(repo, tracked)  # a link it could not make is refused before params.yaml is written
    linked = link_corpus(repo, cfg.write_params(repo, args.overrides, repo / cfg.PARAMS_FILE))
    print(f"composed {repo / cfg.CONF_DIR}/ into {repo / cfg.PARAMS_FILE}" + (f"; {linked}" if linked else ""))
    return 0


def _stage_config(args: argparse.Namespace) -> cfg.Config:
    """A stage's configuration: conf/ composed with the overrides, or (``--params``, as dvc.yaml runs it) the
    composition DVC wrote."""
    return cfg.load(Path(), args.overrides, params_file=Path(args.params) if args.params else None)


def _build(args: argparse.Namespace) -> int:
    from eegcache import workspace
    from eegcache.builder.run import run_build
    from eegcache.summary import print_summary, summary_table

    config = _stage_config(args)
    if args.params:  # the DVC stage: DVC hashed what the corpus link leads to
        workspace.check_corpus_link(Path(), config)
    elif note := workspace.outside_dvc_note(config):
        print(note, file=sys.stderr)
    summary = run_build(config)
    title = f"cache summary — processed {summary.processed}, reused {summary.reused}, in {summary.seconds:.1f} s"
    table = summary_table(summary.metadata, title)
    lines = [f"cache: {summary.cache_dir}"]
    lines += [f"skipped {s['file']}: {s['reason']}" for s in summary.metadata["skipped"]]
    lines += [f"not searched {u['folder']}: {u['reason']}" for u in summary.metadata["unsearched"]]
    print_summary(table, lines)
    return 0


def _train(args: argparse.Namespace) -> int:
    from eegcache.launch import launch, outcome_lines
    from eegcache.summary import literal_console
    from eegcache.versions.identity import requested
    from eegcache.volume.resolve import table

    config, console = _stage_config(args), literal_console(stderr=True)
    asked = requested(Path(), args.overrides) if args.overrides else None
    done = launch(config, Path(), asked=asked, overrides=args.overrides, run_id=args.run_id or "", say=console.out,
                  dvc_stage=os.environ.get("DVC_STAGE", ""))  # fmt: skip
    if done.report is not None:
        console.print(table(done.report))
    print("\n".join(outcome_lines(done, config)))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from eegcache.versions.verify import verify

    verdict = verify(Path(args.cache_dir), deep=args.deep)
    mode = "deep" if args.deep else "fast"
    if verdict.ok:
        print(
            f"OK ({mode}): {verdict.where} holds {verdict.files} files, {verdict.bytes / 1e6:.1f} MB as its metadata says"
        )
        return 0
    print(f"INVALID ({mode}): {verdict.where}: {len(verdict.problems)} problem(s)")
    for problem in verdict.problems[:50]:
        print(f"  - {problem}")
    if len(verdict.problems) > 50:
        print(f"  ... and {len(verdict.problems) - 50} more")
    return 1


def _summary(args: argparse.Namespace) -> int:
    from eegcache.summary import print_summary, summary_table
    from eegcache.versions.verify import checked_metadata

    metadata = checked_metadata(Path(args.cache_dir))
    print_summary(summary_table(metadata), [f"cache: {args.cache_dir}"])
    return 0


def _remote_verify(args: argparse.Namespace) -> int:
    from eegcache.versions.verify import verify_remote

    verdict = verify_remote(Path(args.repo), rev=args.rev, deep=args.deep)
    where = verdict.where
    if verdict.ok:
        print(f"OK ({'deep' if args.deep else 'fast'}): all {verdict.files} objects of {where} are present")
        return 0
    print(f"INCOMPLETE: {where}: {len(verdict.problems)} problem(s)")
    for problem in verdict.problems:
        print(f"  - {problem}")
    return 1


def _push(args: argparse.Namespace) -> int:
    from eegcache.versions import dvc

    sent = dvc.push(Path(args.repo), jobs=args.jobs, deep=args.deep)
    version = dvc.version_at(Path(args.repo))
    print(f"uploaded {sent} object(s); version {version.hash} ({version.nfiles} files) is on the remote")
    return 0


def _versions(args: argparse.Namespace) -> int:
    from rich.table import Table

    from eegcache.summary import literal_console
    from eegcache.versions import dvc

    table = Table(title="cache versions (dvc.lock in tags and commits)")
    for column in ("hash", "revisions", "files", "MB", "split policy", "params"):
        table.add_column(column)
    for version, revs in dvc.versions(Path(args.repo)):
        p = version.params
        summary = f"{p.get('preprocess.montage')} {p.get('preprocess.sample_rate')} Hz {p.get('preprocess.dtype')}"
        table.add_row(
            version.dirname[:12],
            ", ".join(revs[:4]),
            str(version.nfiles),
            f"{version.size / 1e6:.1f}",
            str(version.split_policy),
            summary,
        )
    literal_console().print(table)
    return 0


def _pull_version(args: argparse.Namespace) -> int:
    from eegcache import trust
    from eegcache.versions import dvc
    from eegcache.versions.lockfile import Version
    from eegcache.volume.install import pull_version

    repo = Path(args.repo)
    if args.hash is None:
        version = dvc.version_at(repo, args.rev)
    else:
        version = Version("--hash", trust.version_id(args.hash, "--hash"), 0, 0)
    out = pull_version(repo, version, Path(args.target), jobs=args.jobs)
    print(f"version {version.hash} is at {out}")
    return 0


def _resolve(args: argparse.Namespace) -> int:
    from eegcache.summary import literal_console
    from eegcache.versions.identity import requested
    from eegcache.volume import resolve
    from eegcache.volume.layout import in_use, versions_root

    console = literal_console(stderr=True)
    repo = Path(args.repo)
    config = cfg.load(repo, args.overrides)
    asked = requested(repo, args.overrides)
    volume = resolve.volume_root(config, repo)
    with in_use(versions_root(volume), volume):  # what it prints is there when it exits
        try:
            report = resolve.resolve(config, repo, say=lambda text: console.print(text, markup=False), asked=asked)
        except resolve.ResolveError as exc:
            if args.json:
                _write_json(args.json, exc.report.as_dict())
            console.print(resolve.table(exc.report))
            raise
        console.print(resolve.table(report))
        if args.json:
            _write_json(args.json, report.as_dict())
        else:
            print(report.path)
    return 0


def _write_json(where: str, data: dict) -> None:
    import json

    text = json.dumps(data, indent=1, sort_keys=True)
    if where == "-":
        print(text)
    else:
        Path(where).write_text(text + "\n")


def _prune(args: argparse.Namespace) -> int:
    from eegcache.versions.expected import expected_version
    from eegcache.volume.prune import prune
    from eegcache.volume.resolve import volume_root

    config = cfg.load(Path(args.repo), args.overrides)
    in_use = set(args.in_use or [])
    expected = expected_version(config, Path(args.repo)).hash
    in_use |= {expected} if expected else set()
    result = prune(volume_root(config, Path(args.repo)), args.keep, in_use)
    for name in result.removed:
        print(f"removed {name}")
    print(
        f"kept {len(result.kept)} version(s) ({', '.join(result.kept) or 'none'}); removed {len(result.removed)}, "
        f"and {result.objects_removed} cache object(s) only they used ({result.bytes_freed / 1e6:.1f} MB)"
    )
    return 0


def _s3_start(args: argparse.Namespace) -> int:
    from eegcache.devtools import s3local

    server = s3local.start(Path(args.dir), bucket=args.bucket, timeout_s=args.timeout)
    print(f"S3 server at {server.endpoint_url}: bucket {server.bucket}, data {server.data_dir}, log {server.log_file}")
    if args.configure_dvc:
        from eegcache.versions import dvc

        dvc.configure_access(
            Path("."), endpoint_url=server.endpoint_url, access_key=server.access_key, secret_key=server.secret_key
        )
        print("wrote its endpoint and keys to .dvc/config.local (git-ignored) for the remote 'storage'")
        return 0
    print("Point DVC at it (--local writes the git-ignored .dvc/config.local, never the tracked .dvc/config):")
    print(f"  dvc remote modify --local storage endpointurl {server.endpoint_url}")
    if args.show_credentials:
        print(f"  dvc remote modify --local storage access_key_id {server.access_key}")
        print(f"  dvc remote modify --local storage secret_access_key {server.secret_key}")
    else:
        print("  (the access_key_id and secret_access_key lines: rerun `start` with --show-credentials)")
    return 0


def _s3_stop(args: argparse.Namespace) -> int:
    from eegcache.devtools import s3local

    stopped = s3local.stop(Path(args.dir))
    print(f"stopped the S3 server in {args.dir}" if stopped else f"no S3 server was running in {args.dir}")
    return 0


def _s3_status(args: argparse.Namespace) -> int:
    from eegcache.devtools import s3local

    server = s3local.status(Path(args.dir))
    if server is None:
        print(f"no S3 server running in {args.dir}")
        return 1
    print(f"running: {server.endpoint_url} bucket {server.bucket} pid {server.pid} data {server.data_dir}")
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
    p.add_argument("--repo", default=".", help="the project (conf/ in, params.yaml out)")
    p.set_defaults(func=_params)

    p = sub.add_parser("build", help="build or update the cache (the DVC stage `build_cache`)")
    p.add_argument("overrides", nargs="*", help="Hydra overrides on conf/, e.g. preprocess=tcp22 build.workers=2")
    p.add_argument("--params", metavar="FILE", help="read the composition DVC wrote (the stage: --params params.yaml)")
    p.set_defaults(func=_build)

    p = sub.add_parser("train", help="run train.entrypoint (default: the baseline; the DVC stage `train`) in a run dir")
    p.add_argument("overrides", nargs="*", help="e.g. train=NAME train.args.lr=0.01, cache.rev=TAG (a version)")
    p.add_argument("--params", metavar="FILE", help="read the composition DVC wrote (the stage: --params params.yaml)")
    p.add_argument("--run-id", help="continue this run (its checkpoints); default: a new run")
    p.set_defaults(func=_train)

    p = sub.add_parser("verify", help="check a cache against its metadata")
    p.add_argument("cache_dir")
    p.add_argument("--deep", action="store_true", help="also re-hash every file and check its arrays")
    p.set_defaults(func=_verify)

    p = sub.add_parser(
        "push", help="dvc push the cache version, then re-send anything missing or damaged on the remote"
    )
    p.add_argument("--jobs", type=int)
    p.add_argument(
        "--deep", action="store_true", help="re-hash every object on the remote (default: listing, metadata, sizes)"
    )
    p.add_argument("--repo", default=".")
    p.set_defaults(func=_push)

    p = sub.add_parser("remote-verify", help="check that every object of a cache version is on the DVC remote")
    p.add_argument("--rev", help="git revision whose dvc.lock names the version (default: working tree)")
    p.add_argument("--deep", action="store_true", help="download and re-hash every object")
    p.add_argument("--repo", default=".")
    p.set_defaults(func=_remote_verify)

    p = sub.add_parser("versions", help="list the cache versions pinned by tags and commits")
    p.add_argument("--repo", default=".")
    p.set_defaults(func=_versions)

    p = sub.add_parser("pull-version", help="pull a cache version into TARGET/<hash>/ without a git checkout there")
    p.add_argument("target")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--rev", help="git revision whose dvc.lock names the version (default: working tree)")
    which.add_argument("--hash", help="the version hash itself (<md5>.dir)")
    p.add_argument("--jobs", type=int)
    p.add_argument("--repo", default=".")
    p.set_defaults(func=_pull_version)

    p = sub.add_parser("resolve", help="put the expected cache version on the volume from the first valid source")
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. cache=volume_first cache.validation=deep")
    p.add_argument("--json", metavar="FILE", help="also write the report as JSON to FILE ('-': stdout)")
    p.add_argument("--repo", default=".", help="the project (conf/, dvc.lock, .dvc/)")
    p.set_defaults(func=_resolve)

    p = sub.add_parser("prune", help="remove old cache versions from the volume (never the one in use)")
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. cache.volume_root=/results")
    p.add_argument("--keep", type=int, required=True, help="versions to keep, most recently used first")
    p.add_argument("--in-use", action="append", metavar="HASH", help="also keep this version (repeatable)")
    p.add_argument("--repo", default=".")
    p.set_defaults(func=_prune)

    p = sub.add_parser("summary", help="print a cache's per-split summary from its metadata")
    p.add_argument("cache_dir")
    p.set_defaults(func=_summary)
    p = sub.add_parser("s3-local", help="start, stop or check the local SeaweedFS S3 server")
    s3 = p.add_subparsers(dest="s3_command", required=True)
    p = s3.add_parser("start", help="start it (or find it running); print how to point DVC at it")
    p.add_argument("--bucket", default="eegcache")
    p.add_argument("--timeout", type=float, default=60, help="seconds to wait until it answers")
    p.add_argument("--show-credentials", action="store_true", help="also print the DVC commands with the keys")
    p.add_argument("--configure-dvc", action="store_true", help="write endpoint and keys to .dvc/config.local")
    p.set_defaults(func=_s3_start)
    p = s3.add_parser("stop", help="stop it (the data stays)")
    p.set_defaults(func=_s3_stop)
    p = s3.add_parser("status", help="exit 0 if it is running and answering, 1 if not")
    p.set_defaults(func=_s3_status)
    for p in s3.choices.values():
        p.add_argument("--dir", default=".eegcache/s3", help="state directory: data/, weed.log, server.json")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if hasattr(signal, "SIGXFSZ"):  # past a file-size limit a write then fails with EFBIG, a clear error, instead
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # of the signal killing us (workers inherit this)
    # -v opens eegcache's own debug messages only: the libraries' (botocore, s3fs, DVC) would print request
    # headers, which carry the access key id
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("eegcache").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return args.func(args)
    except EegcacheError as exc:
        print(redact(f"eegcache {args.command}: error: {exc}"), file=sys.stderr)
        return 2
    except (OSError, sqlite3.Error) as exc:
        # the system's refusal (read-only, full disk, limits): one line, no traceback
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        print(
            redact(f"eegcache {args.command}: error: {where}{getattr(exc, 'strerror', None) or exc}"), file=sys.stderr
        )
        return 2
    except RecursionError:  # a document nested too deep for a parser of the core (its other parsers are bounded)
        print(f"eegcache {args.command}: error: a file it read is nested too deep to be eegcache's", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"eegcache {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
