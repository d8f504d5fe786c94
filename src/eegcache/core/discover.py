"""Find the recordings of a TUSZ corpus from its file names alone (never opens a file), and say what it left out.

The layout and the names are described in :mod:`eegcache.core.corpus`. Each EDF is judged on its own, and
what is wrong with one file is that recording's problem, never the corpus's (the build lists it in the metadata's
``skipped`` under ``build.on_error=skip``, or stops naming the file under ``fail``):

- **names**: an EDF must be named ``<patient>_sNNN_tNNN.edf`` (patient = 8 lowercase letters) and sit below a
  ``train``, ``dev`` or ``eval`` folder inside the root; a copy named ``recording copy (1).edf``, a name ending in
  ``.EDF`` (any case of the extension is an EDF found, so none is passed over silently) or an EDF in a folder of its
  own is a problem of that file. Files and folders starting with ``.`` are not recordings (macOS ``._x.edf``
  shadows).
- **regular files only**: an EDF or its annotation that is a FIFO, socket or device is refused (reading one would
  block or never end); a symbolic link is followed only to a regular file inside the root (``realpath`` below the
  root's ``realpath``), so a link to ``/dev/zero`` or to a file elsewhere is refused. A link whose target is
  missing is left to the reader, which reports it ("No such file or directory").
- **folders not searched**: hidden folders (``.``-prefixed) and symbolic links to folders are never entered (a
  link could lead out of the corpus or into it twice); each is reported in :attr:`Survey.unsearched` (the build
  logs a warning and records them in the metadata's ``unsearched``), never dropped without a word.
- **duplicates**: one name (bname) must stand for one recording. TUSZ v2.0.0/v2.0.1 shipped some sessions with the
  same tokens under two montage folders (``eval/aaaaaqvx/s003_2015_08_24/01_tcp_ar/aaaaaqvx_s003_t000.edf`` and
  ``.../03_tcp_ar_a/aaaaaqvx_s003_t000.edf``; removed in v2.0.2). When the copies are montage folders of one
  session (the same path but for the folder holding the EDF) and one of those folders comes first in ``prefer``
  (``data.prefer_montage_folders``), that copy is kept and the others are :attr:`Survey.superseded` (recorded as
  skipped with the reason, whatever ``on_error`` says: the config chose). Otherwise (copies in two sessions or
  splits, or no preferred folder among them) no copy is built and each is a problem: which one is right cannot
  be told from the names. The default preference, :data:`MONTAGE_PREFERENCE`, is TUSZ's own order: ``01_tcp_ar``
  (averaged reference, 5,508 of the 7,361 v2.0.3 files) keeps A1/A2, so both montages derive every channel
  without zero-filling, and ``03_tcp_ar_a`` (no A1/A2) comes last; the copies share patient, session and split,
  so keeping one cannot leak a patient across splits. An empty preference skips every copy.

- **folders that cannot be read** (no permission, an I/O error) below the root are :attr:`Survey.unreadable`, each
  with a CorpusError naming the folder: the build stops on the first under ``build.on_error=fail`` and under
  ``skip`` warns and records it in the metadata's ``unsearched``, as it does for an unreadable file.

Only what is about the whole corpus raises :class:`CorpusError`: a root that is not a folder or cannot be read, no EDF
at all.
"""

from __future__ import annotations

import os
import re
import stat
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from eegcache.errors import CorpusError

SPLITS = ("train", "dev", "eval")
ANNOTATION_SUFFIXES = (".csv_bi", ".csv")  # order of preference beside an EDF
MONTAGE_PREFERENCE = ("01_tcp_ar", "02_tcp_le", "03_tcp_ar_a")  # default of data.prefer_montage_folders
PREFERENCE_KEY = "data.prefer_montage_folders"

_NAME = re.compile(r"^([a-z]{8})_(s\d{3})_(t\d{3})\.edf$")
_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))  # fmt: skip


@dataclass(frozen=True)
class RecordingRef:
    edf: Path  # path of the .edf
    annotation: Path | None  # the .csv_bi beside it, else the .csv, else None (build decides fail/skip)
    relpath: str  # edf path relative to the root, posix
    bname: str  # "aaaaaaab_s001_t000"
    patient: str  # "aaaaaaab"
    session: str  # "s001"
    token: str  # "t000"
    official_split: str  # "train" | "dev" | "eval"


@dataclass(frozen=True)
class Problem:
    """An EDF that is not built, and why: ``error`` names the file (the EDF, or its annotation) and the reason."""

    relpath: str  # the EDF's path relative to the root, posix
    error: CorpusError


@dataclass(frozen=True)
class Survey:
    """What :func:`survey` found, each list sorted by relpath."""

    refs: list[RecordingRef]  # the recordings to build
    problems: list[Problem]  # EDFs refused (names, file types, links, unresolved duplicates)
    superseded: list[Problem]  # duplicate copies set aside for a preferred montage folder
    unsearched: list[tuple[str, str]]  # (folder relpath, reason) of folders not entered
    unreadable: list[Problem] = field(default_factory=list)  # folders below the root that cannot be read


def survey(root: Path, prefer: Sequence[str] = MONTAGE_PREFERENCE) -> Survey:
    """Every ``.edf`` under ``root``, judged one by one (see the module docstring); ``prefer``: montage folder
    names, most preferred first, that settle duplicates within a session."""
    root = Path(root)
    if not root.is_dir():
        raise CorpusError("corpus root is not a folder", root)
    real_root = Path(os.path.realpath(root))
    found: list[RecordingRef] = []
    problems: list[Problem] = []
    unsearched: list[tuple[str, str]] = []
    unreadable: list[Problem] = []
    todo: list[tuple[Path, tuple[str, ...]]] = [(root, ())]
    while todo:
        folder, parts = todo.pop()
        try:
            with os.scandir(folder) as listing:
                entries = {entry.name: entry for entry in listing}
        except OSError as exc:
            error = CorpusError(f"cannot read folder: {exc.strerror or exc}", folder)
            if not parts:
                raise error from exc
            unreadable.append(Problem("/".join(parts), error))
            continue
        for name, entry in sorted(entries.items()):
            rel = "/".join((*parts, name))
            if entry.is_dir(follow_symlinks=False):
                if name.startswith("."):
                    unsearched.append((rel, "hidden folder: not searched"))
                else:
                    todo.append((folder / name, (*parts, name)))
            elif entry.is_symlink() and entry.is_dir():
                unsearched.append((rel, "symbolic link to a folder: not followed"))
            elif name.lower().endswith(".edf") and not name.startswith("."):
                try:
                    found.append(_recording(folder, entry, entries, parts, real_root))
                except CorpusError as exc:
                    problems.append(Problem(rel, exc))
    if not found and not problems:
        not_read = [(p.relpath, p.error.reason) for p in unreadable]
        passed = "; ".join(f"{folder}: {reason}" for folder, reason in sorted([*unsearched, *not_read]))
        raise CorpusError("no .edf files found under the corpus root" + (f" (not searched: {passed})" if passed else ""),
                          root)  # fmt: skip
    refs, superseded = _settle_duplicates(found, prefer, problems)
    return Survey(sorted(refs, key=lambda r: r.relpath), sorted(problems, key=lambda p: p.relpath),
                  sorted(superseded, key=lambda p: p.relpath), sorted(unsearched),
                  sorted(unreadable, key=lambda p: p.relpath))  # fmt: skip


def discover(root: Path, prefer: Sequence[str] = MONTAGE_PREFERENCE) -> list[RecordingRef]:
    """The recordings of :func:`survey`, strictly: the first problem raises its CorpusError (naming the file)."""
    found = survey(root, prefer)
    if found.problems:
        raise found.problems[0].error
    return found.refs


def _recording(folder: Path, entry: os.DirEntry, entries: dict[str, os.DirEntry], parts: tuple[str, ...],
               real_root: Path) -> RecordingRef:  # fmt: skip
    """The recording of one ``.edf`` entry of ``folder`` (whose entries by name are ``entries``); CorpusError
    naming the file for a bad name, a place outside the splits, or an EDF or annotation that is no regular file."""
    edf = folder / entry.name
    bname = entry.name[: -len(".edf")]
    match = _NAME.match(entry.name)
    if match is None:
        raise CorpusError(
            f"EDF name does not follow <patient>_sNNN_tNNN.edf (patient = 8 lowercase letters): {entry.name!r}", edf
        )
    split = next((p for p in reversed(parts) if p in SPLITS), None)
    if split is None:
        raise CorpusError(f"EDF is not under a {'/'.join(SPLITS)} folder below the corpus root", edf)
    _check_regular(entry, real_root)
    annotation = next((entries[bname + s] for s in ANNOTATION_SUFFIXES if bname + s in entries), None)
    if annotation is not None:
        _check_regular(annotation, real_root)
    patient, session, token = match.groups()
    relpath = "/".join((*parts, entry.name))
    annotation_path = None if annotation is None else folder / annotation.name
    return RecordingRef(edf, annotation_path, relpath, bname, patient, session, token, split)


def _check_regular(entry: os.DirEntry, real_root: Path) -> None:
    """CorpusError naming the file unless it is a regular file, or a symbolic link to one inside the root (a link
    to a missing file passes: its reader says so). Plain files cost no system call (the folder listing's type)."""
    if entry.is_file(follow_symlinks=False):
        return
    try:
        if not entry.is_symlink():
            raise CorpusError(f"not a regular file: {_kind(entry.stat(follow_symlinks=False).st_mode)}", entry.path)
        target = Path(os.path.realpath(entry.path))
        if not target.is_relative_to(real_root):
            raise CorpusError("symbolic link to a file outside the corpus root (data.raw_dir): not followed", entry.path)
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise CorpusError(f"cannot examine the file: {exc.strerror or exc}", entry.path) from exc
    if not stat.S_ISREG(mode):
        raise CorpusError(f"symbolic link to {_kind(mode)}, not to a regular file", entry.path)


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _settle_duplicates(found: list[RecordingRef], prefer: Sequence[str],
                       problems: list[Problem]) -> tuple[list[RecordingRef], list[Problem]]:  # fmt: skip
    """-> (refs with one recording per bname, the copies set aside for a preferred montage folder); unresolved
    duplicates are appended to ``problems``, every copy."""
    by_bname: dict[str, list[RecordingRef]] = defaultdict(list)
    for ref in found:
        by_bname[ref.bname].append(ref)
    refs: list[RecordingRef] = []
    superseded: list[Problem] = []
    for bname, copies in by_bname.items():
        if len(copies) == 1:
            refs.extend(copies)
            continue
        copies.sort(key=lambda r: r.relpath)
        kept = _preferred(copies, prefer)
        if kept is None:
            listed = ", ".join(c.relpath for c in copies)
            why = ("no montage folder of " + PREFERENCE_KEY + " among them" if _siblings(copies)
                   else "not montage folders of one session")  # fmt: skip
            problems.extend(Problem(c.relpath, CorpusError(
                f"{len(copies)} EDFs share the name {bname} ({listed}); none is built: {why}", c.edf)) for c in copies)
            continue
        refs.append(kept)
        folder = Path(kept.relpath).parent.name
        superseded.extend(Problem(c.relpath, CorpusError(
            f"duplicate of {kept.relpath}, montage folder {folder} preferred ({PREFERENCE_KEY})", c.edf))
            for c in copies if c is not kept)  # fmt: skip
    return refs, superseded


def _siblings(copies: list[RecordingRef]) -> bool:
    """The copies differ only in the folder holding them (montage folders of one session)."""
    parents = [Path(c.relpath).parent for c in copies]
    return len({p.parent for p in parents}) == 1 and len({p.name for p in parents}) == len(parents)


def _preferred(copies: list[RecordingRef], prefer: Sequence[str]) -> RecordingRef | None:
    """The copy in the first folder of ``prefer`` when the copies are montage-folder siblings, else None."""
    if not _siblings(copies):
        return None
    by_folder = {Path(c.relpath).parent.name: c for c in copies}
    return next((by_folder[f] for f in prefer if f in by_folder), None)
