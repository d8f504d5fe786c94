"""This machine's corpus, kept where it is, with tracked files that are the same on every machine.

``paths.data_dir`` in ``conf/local/default.yaml`` (git-ignored) says where this machine keeps its corpora; the
tracked ``params.yaml`` keeps the project's own ``data.raw_dir`` (``data/tusz``), so ``dvc.yaml``'s dependency,
``dvc.lock`` and the version hash do not depend on where a teammate's disk is. The two meet in one link that
eegcache manages: ``eegcache params`` points ``<project>/data/tusz`` at ``<paths.data_dir>/tusz`` (DVC follows a
dependency that is a link and hashes what it points at), and the DVC stage ``build_cache`` refuses to build when
the link does not lead where conf/local says (run ``eegcache params`` again). Commands that compose conf/local
themselves (``eegcache build``, ``resolve``) read the corpus at its own place directly.
"""

from __future__ import annotations

import os
from pathlib import Path

from eegcache import config
from eegcache.errors import ConfigError


def _moved_by_data_dir(project: Path, tracked: config.Config) -> bool:
    """Whether the tracked ``data.raw_dir`` is a data group's ``${paths.data_dir}/...`` (the corpus conf/local
    moves), not a path of its own (the demo corpus, written into the project; a ``data.raw_dir=`` override)."""
    import yaml

    head = "${paths.data_dir}"
    groups = [
        (yaml.safe_load(g.read_text()) or {}).get("raw_dir")
        for g in (project / config.CONF_DIR / "data").glob("*.yaml")
    ]
    return any(
        isinstance(raw, str)
        and raw.startswith(head + "/")
        and Path(tracked.paths.data_dir + raw[len(head) :]) == Path(tracked.data.raw_dir)
        for raw in groups
    )


def corpus_link(project: Path, tracked: config.Config) -> tuple[Path, Path] | None:
    """(link in the project, the corpus it must lead to) when this machine's conf/local moves the corpus of the
    tracked composition ``tracked`` (its ``paths.data_dir``); None when there is nothing to link (conf/local keeps
    the project's place, the corpus is not below ``paths.data_dir``, or the link's folder already is the corpus).
    ConfigError, before anything is written, for a link eegcache could not make or must not: a real file or folder
    in its place, a corpus that is the link itself or lies in the cache."""
    here = os.path.expanduser(str(config.compose(project, (), local=True)["paths"]["data_dir"]))
    there, raw = Path(tracked.paths.data_dir), Path(tracked.data.raw_dir)
    if Path(here) == there or not raw.is_relative_to(there) or not _moved_by_data_dir(project, tracked):
        return None
    if raw.is_absolute() or ".." in raw.parts:
        raise ConfigError(
            f"data.raw_dir = {tracked.data.raw_dir!r}: the tracked path of the corpus must lie inside the project "
            "(params.yaml and dvc.lock are the same on every machine); this machine's location goes in "
            "conf/local/default.yaml (paths.data_dir)"
        )
    target = Path(here) / raw.relative_to(there)
    target = target if target.is_absolute() else Path(os.path.abspath(project / target))
    link = project / raw
    cache = project / tracked.build.out_dir
    pairs = [(Path(os.path.normpath(target)), Path(os.path.normpath(p))) for p in (link, cache)]  # as written
    pairs.append((Path(os.path.realpath(target)), Path(os.path.realpath(cache))))  # and where links lead
    if any(a.is_relative_to(b) or b.is_relative_to(a) for a, b in pairs):
        raise ConfigError(
            f"conf/local/default.yaml keeps the corpus at {target}, which is this link itself or overlaps the cache "
            f"{tracked.build.out_dir}: paths.data_dir must name the folder holding the download (e.g. /mnt/eeg "
            "for /mnt/eeg/tusz), outside the project's cache",
            link,
        )
    where = Path(os.path.realpath(link.parent)) / link.name  # the link's own place, its folders' links followed
    if where == Path(os.path.realpath(target)):
        return None  # e.g. data/ itself links to the corpora folder: data/tusz is the corpus already
    if link.exists() and not link.is_symlink():
        raise ConfigError(
            f"a {'folder' if link.is_dir() else 'file'} of its own, while conf/local/default.yaml keeps the corpus at "
            f"{target}: move it away (or there), or drop paths.data_dir from conf/local; eegcache links this path, "
            "never removes what it did not make",
            link,
        )
    return link, target


def link_corpus(project: Path, tracked: config.Config) -> str | None:
    """Make the project's corpus folder a link to where conf/local keeps it -> what was done (None: nothing to do).
    ConfigError when it could not (:func:`corpus_link`; eegcache never removes what it did not create)."""
    found = corpus_link(project, tracked)
    if found is None:
        return None
    link, target = found
    if link.is_symlink() and Path(os.readlink(link)) == target:
        return None
    was = f" (was {os.readlink(link)})" if link.is_symlink() else ""
    link.parent.mkdir(parents=True, exist_ok=True)
    staged = link.with_name(f".{link.name}.link-{os.getpid()}")
    staged.unlink(missing_ok=True)
    os.symlink(target, staged, target_is_directory=True)
    os.replace(staged, link)  # a link replaced in one step: never a moment without one
    missing = "" if target.is_dir() else f"; {target} is not a folder yet"
    return f"linked {link} -> {target}{was}{missing}"


def check_corpus_link(project: Path, tracked: config.Config) -> None:
    """ConfigError when the project's corpus link does not lead where this machine's conf/local keeps the corpus
    (the DVC stage: DVC hashed what the link leads to, so a stale link would build the wrong corpus)."""
    found = corpus_link(project, tracked)
    if found is None:
        return
    link, target = found
    now = os.readlink(link) if link.is_symlink() else ("a folder" if link.exists() else "missing")
    if str(now) != str(target):
        raise ConfigError(
            f"conf/local/default.yaml keeps the corpus at {target}, but this path is {now}: run `eegcache params` "
            "(it links the path there), then `dvc repro`",
            link,
        )


def outside_dvc_note(config_here: config.Config, project: Path = Path()) -> str | None:
    """A note when ``eegcache build`` writes into the DVC stage's own output with other stage params than
    params.yaml: DVC's record of that output would then be stale (``dvc status`` shows it modified)."""
    params_file = project / config.PARAMS_FILE
    if not params_file.is_file():
        return None
    from eegcache.versions.identity import conflicts, stage_params
    from eegcache.versions.lockfile import flatten

    staged = config.load(project, params_file=params_file)
    differs = conflicts(flatten(stage_params(staged)), flatten(stage_params(config_here)))
    if not differs or (project / config_here.build.out_dir).resolve() != (project / staged.build.out_dir).resolve():
        return None
    return (
        f"note: building into {config_here.build.out_dir}, the DVC stage's output, with other params than params.yaml "
        f"({'; '.join(differs)}): `dvc status` will show it modified. `eegcache params <overrides> && dvc repro` "
        "records such a build; `paths.cache_dir=<dir>` builds elsewhere."
    )
