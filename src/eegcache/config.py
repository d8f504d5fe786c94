"""The one configuration road: ``conf/`` composed by Hydra with the caller's overrides (group selections
included), converted once into the frozen dataclasses below (:func:`load`); nothing below sees a ``DictConfig``.

``params.yaml`` is that composition written for DVC (:func:`write_params`, or ``dvc exp run -S``); a DVC stage reads
it back through the same conversion. The ``modal`` group is kept as the mapping it composed to: only the Modal app
types it (:func:`eegcache.modal_settings.modal_settings`), so nothing that trains or builds depends on its schema.
What a cache version's identity is made of is in :mod:`eegcache.versions.identity`.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from eegcache import trust
from eegcache.core.montage import MONTAGES
from eegcache.errors import ConfigError

CONF_DIR = "conf"
LOCAL = "local"  # the git-ignored group of per-machine settings
CONFIG_NAME = "config"
PARAMS_FILE = "params.yaml"


def _choice(name: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name} = {value!r}; expected one of {', '.join(allowed)}")


@dataclass(frozen=True)
class PathsConfig:
    """Where things are on this machine (``conf/paths/<name>.yaml``; the other groups refer to these by
    interpolation). Relative paths start at the project root."""

    data_dir: str = "data"  # raw corpora: <data_dir>/<corpus folder> (data.raw_dir)
    cache_dir: str = "cache/tusz"  # the DVC stage output (build.out_dir)
    state_dir: str = ".eegcache"  # machine-local hash state (build.state_dir)
    volume_root: str = ".eegcache/volume"  # the persistent volume (cache.volume_root)
    mount_point: str = ""  # the DVC remote's prefix mounted read-only (cache.mount_point; "" = none)


@dataclass(frozen=True)
class DataConfig:
    raw_dir: str = "data/tusz_demo"
    split_policy: str = "official_tusz"
    dev_ratio: float = 0.2
    split_seed: int = 0
    prefer_montage_folders: tuple[str, ...] = ("01_tcp_ar", "02_tcp_le", "03_tcp_ar_a")  # see eegcache.core.discover
    RANGES = {
        "dev_ratio": (0.0, 1.0),
        "split_seed": (0, 2**32 - 1),
    }  # inclusive bounds of the numbers (config.section checks them)

    def __post_init__(self) -> None:
        _choice("data.split_policy", self.split_policy, ("official_tusz", "patient_disjoint"))
        if not 0.0 < self.dev_ratio < 1.0:
            raise ConfigError(f"data.dev_ratio = {self.dev_ratio}; expected a fraction in (0, 1)")
        if len(set(f := self.prefer_montage_folders)) != len(f) or not all(n and "/" not in n for n in f):
            raise ConfigError(f"data.prefer_montage_folders = {list(f)}; expected distinct folder names")


@dataclass(frozen=True)
class PreprocessConfig:
    montage: str = "ref19"
    missing_channels: str = "zero"
    sample_rate: int = 200
    bandpass_low: float = 0.5
    bandpass_high: float = 80.0
    bandpass_order: int = 4
    notch_freq: float = 60.0
    notch_q: float = 30.0
    clip: float = 10.0
    dtype: str = "float16"
    RANGES = {
        "sample_rate": (1, 10_000),
        "bandpass_low": (0.0, 5_000.0),
        "bandpass_high": (0.0, 5_000.0),
        "bandpass_order": (1, 16),
        "notch_freq": (0.0, 5_000.0),
        "notch_q": (0.0, 1_000.0),
        "clip": (0.0, 1_000.0),
    }  # inclusive bounds of the numbers (config.section checks them)

    def __post_init__(self) -> None:
        _choice("preprocess.montage", self.montage, MONTAGES)
        _choice("preprocess.missing_channels", self.missing_channels, ("error", "zero"))
        _choice("preprocess.dtype", self.dtype, ("float16", "float32"))
        nyquist = self.sample_rate / 2
        if self.sample_rate <= 0:
            raise ConfigError(f"preprocess.sample_rate = {self.sample_rate}; expected a positive rate in Hz")
        if not 0 < self.bandpass_low < self.bandpass_high < nyquist:
            raise ConfigError(
                f"preprocess band-pass {self.bandpass_low}-{self.bandpass_high} Hz must satisfy "
                f"0 < low < high < Nyquist ({nyquist} Hz)"
            )
        if self.bandpass_order < 1:
            raise ConfigError(f"preprocess.bandpass_order = {self.bandpass_order}; expected >= 1")
        if self.notch_freq and not 0 < self.notch_freq < nyquist:
            raise ConfigError(f"preprocess.notch_freq = {self.notch_freq} Hz; expected 0 (off) or below {nyquist} Hz")
        if self.notch_q <= 0 or self.clip <= 0:
            raise ConfigError("preprocess.notch_q and preprocess.clip must be positive")


@dataclass(frozen=True)
class BuildConfig:
    out_dir: str = "cache/tusz"
    metrics_file: str = "metrics/cache_stats.json"
    state_dir: str = ".eegcache"
    workers: int = 0
    on_error: str = "fail"
    progress: bool = True
    RANGES = {"workers": (0, 1024)}  # inclusive bounds of the numbers (config.section checks them)

    def __post_init__(self) -> None:
        _choice("build.on_error", self.on_error, ("fail", "skip"))
        if self.workers < 0:
            raise ConfigError(f"build.workers = {self.workers}; expected 0 (all cores) or a positive count")


SOURCES = ("volume", "remote", "mount", "build")


@dataclass(frozen=True)
class CacheConfig:
    """Where a run looks for its cache version, in order (``conf/cache/<preset>.yaml``), and how it checks it."""

    preset: str = "s3_first"
    sources: tuple[str, ...] = ("mount", "remote", "volume", "build")
    validation: str = "fast"  # fast: names, sizes, metadata, version hash; deep: also every file's content hash
    allow_build: bool = False
    push_after_build: bool = True
    volume_root: str = ".eegcache/volume"  # versions live in <volume_root>/cache/tusz/<hash>/
    mount_point: str = ""  # the DVC remote's prefix as a read-only mounted directory ("" = none)
    rev: str = ""  # git revision whose dvc.lock names the version ("" = the working tree)
    version: str = ""  # the version hash itself (<md5>.dir); wins over rev
    jobs: int = 0  # concurrent transfers; 0 = the remote's `jobs`, else 16
    gpu_price_per_hour: float = 2.50  # of the machine the run pays for while it waits (A100-80GB)
    rebuild_gpu_hours: float = 2.5  # measured: rebuilding the cache inside the GPU container
    build_seconds_per_gb: float = 10.0  # measured by `make bench`: this build on 2 cores, per GB of EDF
    RANGES = {
        "jobs": (0, 256),
        "gpu_price_per_hour": (0.0, 1_000.0),
        "rebuild_gpu_hours": (0.0, 1_000.0),
        "build_seconds_per_gb": (0.0, 1e6),
    }  # inclusive bounds of the numbers (config.section checks them)

    def __post_init__(self) -> None:
        for source in self.sources:
            _choice("cache.sources entry", source, SOURCES)
        if len(set(self.sources)) != len(self.sources) or not self.sources:
            raise ConfigError(
                f"cache.sources = {list(self.sources)}; expected distinct entries of {', '.join(SOURCES)}"
            )
        _choice("cache.validation", self.validation, ("fast", "deep"))
        if self.version:
            try:
                trust.version_id(self.version)
            except trust.UnsafeName as exc:
                raise ConfigError(f"cache.version: {exc.reason}") from exc
        if self.rev:
            try:
                trust.revision(self.rev)
            except trust.UnsafeName as exc:
                raise ConfigError(f"cache.rev: {exc.reason}") from exc
        if self.jobs < 0 or min(self.gpu_price_per_hour, self.rebuild_gpu_hours, self.build_seconds_per_gb) < 0:
            raise ConfigError("cache.jobs, prices, hours and seconds must not be negative")


# buckets: balanced sampling over the dataset's seizure buckets; class_weights: every window once per epoch with
# the loss weighted so both classes count equally; none: every window once per epoch, unweighted.
BALANCE_MODES = ("buckets", "class_weights", "none")


def parse_bands(text: str) -> tuple[tuple[float, float], ...]:
    """Frequency bands ``"1-4,4-8,..."`` (Hz) as ((low, high), ...); ConfigError unless each has 0 <= low < high."""
    bands = []
    for part in text.split(","):
        low, sep, high = part.strip().partition("-")
        try:
            band = (float(low), float(high))
        except ValueError:
            band = None
        if not sep or band is None or not 0 <= band[0] < band[1]:
            raise ConfigError(f"train.bands = {text!r}: {part.strip()!r} is not a band 'low-high' (Hz, low < high)")
        bands.append(band)
    return tuple(bands)


@dataclass(frozen=True)
class TrainConfig:
    train_split: str = "train"
    eval_split: str = "dev"
    window_s: float = 10.0
    stride_s: float = 5.0
    bands: str = "1-4,4-8,8-13,13-30,30-70"
    min_seizure_fraction: float = 0.5
    balance: str = "buckets"
    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 0.1
    l2: float = 0.001
    threshold: float = 0.5
    seed: int = 0
    metrics_file: str = "metrics/train.json"
    roc_file: str = "metrics/roc.json"
    model_file: str = "models/baseline.json"
    entrypoint: str = "eegcache.train.baseline:baseline"  # the trainer, module:function (eegcache.train.runs)
    args: dict[str, Any] = field(default_factory=dict)  # the trainer's own settings, free-form (any keys, any depth)
    RANGES = {
        "window_s": (0.0, 3_600.0),
        "stride_s": (0.0, 3_600.0),
        "min_seizure_fraction": (0.0, 1.0),
        "epochs": (1, 100_000),
        "batch_size": (1, 1 << 20),
        "learning_rate": (0.0, 1_000.0),
        "l2": (0.0, 1_000.0),
        "threshold": (0.0, 1.0),
        "seed": (0, 2**32 - 1),
    }  # inclusive bounds of the numbers (config.section checks them)

    def __post_init__(self) -> None:
        _choice("train.balance", self.balance, BALANCE_MODES)
        module, sep, function = self.entrypoint.partition(":")
        if not (sep and module and function.isidentifier()):
            raise ConfigError(f"train.entrypoint = {self.entrypoint!r}; expected module:function")
        parse_bands(self.bands)
        if self.train_split == self.eval_split:
            raise ConfigError(f"train.train_split and train.eval_split are both {self.train_split!r}")
        if self.window_s <= 0 or self.stride_s <= 0:
            raise ConfigError(f"train.window_s = {self.window_s}, stride_s = {self.stride_s}; expected seconds > 0")
        if not 0 < self.min_seizure_fraction <= 1:
            raise ConfigError(f"train.min_seizure_fraction = {self.min_seizure_fraction}; expected a share in (0, 1]")
        if self.epochs < 1 or self.batch_size < 1 or self.seed < 0:
            raise ConfigError("train.epochs and train.batch_size must be at least 1, train.seed at least 0")
        if self.learning_rate <= 0 or self.l2 < 0:
            raise ConfigError(f"train.learning_rate = {self.learning_rate} must be > 0, train.l2 = {self.l2} >= 0")
        if not 0 < self.threshold < 1:
            raise ConfigError(f"train.threshold = {self.threshold}; expected a probability in (0, 1)")

    @property
    def band_edges(self) -> tuple[tuple[float, float], ...]:
        return parse_bands(self.bands)


@dataclass(frozen=True)
class Config:
    paths: PathsConfig = field(default_factory=PathsConfig)
    data: DataConfig = field(default_factory=DataConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    build: BuildConfig = field(default_factory=BuildConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    modal: dict[str, Any] = field(default_factory=dict)  # typed by eegcache.modal_settings, for the Modal app only
    train: TrainConfig = field(default_factory=TrainConfig)


def section(cls: type, raw: Any, where: str) -> Any:
    """One frozen dataclass from a mapping: unknown keys and wrong types are errors (an int may stand for a float)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where or 'the configuration'} must be a mapping, got {type(raw).__name__}")
    fields = {f.name: f.type for f in dataclasses.fields(cls)}
    path = {name: f"{where}.{name}" if where else name for name in set(raw) | set(fields)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(path[k] for k in unknown)}; known: {', '.join(fields)}")
    values: dict[str, Any] = {}
    for name, value in raw.items():
        kind = fields[name]
        if kind in _SECTIONS:
            values[name] = section(_SECTIONS[kind], value, path[name])
            continue
        if kind == "dict[str, Any]":
            if not isinstance(value, dict):
                raise ConfigError(f"{path[name]} = {value!r}: expected a mapping")
            values[name] = copy.deepcopy(value)
            continue
        if kind == "tuple[str, ...]":
            if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
                raise ConfigError(f"{path[name]} = {value!r}: expected a list of strings")
            values[name] = tuple(value)
            continue
        expected = {"str": str, "int": int, "float": (int, float), "bool": bool}[kind]
        if (isinstance(value, bool) and kind != "bool") or not isinstance(value, expected):
            raise ConfigError(f"{path[name]} = {value!r}: expected {kind}, got {type(value).__name__}")
        values[name] = float(value) if kind == "float" else value
        low, high = getattr(cls, "RANGES", {}).get(name, (-math.inf, math.inf))
        if kind in ("int", "float") and not (math.isfinite(value) and low <= value <= high):
            raise ConfigError(f"{path[name]} = {value!r}: expected a finite number, {low:g} to {high:g}")
    return cls(**values)


def from_mapping(raw: dict[str, Any], source: str) -> Config:
    """The frozen dataclasses from a plain mapping (a composition); unknown keys and wrong types raise ConfigError
    naming ``source``."""
    trust.refuse_secrets(raw, source)  # a conf/ interpolation of the environment, or a value typed in
    try:
        return section(Config, raw, "")
    except ConfigError as exc:
        raise ConfigError(exc.reason, source) from exc


_SECTIONS: dict[str, type] = {
    cls.__name__: cls for cls in (PathsConfig, DataConfig, PreprocessConfig, BuildConfig, CacheConfig, TrainConfig)
}


def compose(project: Path, overrides: Sequence[str] = (), local: bool = False) -> dict[str, Any]:
    """``<project>/conf`` composed by Hydra with the overrides (``preprocess=tcp22``, ``build.workers=2``), as a
    plain dict with interpolations resolved: what DVC's ``dvc exp run -S`` writes to ``params.yaml``. With ``local``,
    this machine's ``conf/local/default.yaml`` (if any) is composed last."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException

    config_dir = Path(project) / CONF_DIR
    if not (config_dir / f"{CONFIG_NAME}.yaml").is_file():
        raise ConfigError(f"no {CONFIG_NAME}.yaml here: not an eegcache project (or run from its root)", config_dir)
    extra = [f"+{LOCAL}=default"] if local and (config_dir / LOCAL / "default.yaml").is_file() else []
    interpolated = [override.split("=", 1)[0] for override in overrides if "${" in override]
    if interpolated:
        raise ConfigError(
            f"{', '.join(interpolated)}: a value given on the command line (or --overrides, EEGCACHE_MODAL) is a "
            "literal; interpolations (${...}) belong in conf/ files",
            config_dir,
        )
    overrides = [free_form(override) for override in overrides]
    # A command composes the same overrides more than once (resolve: the config, then what the overrides ask for);
    # Hydra takes ~0.2 s a time. The key holds every file of conf/ with its size and mtime, so an edit recomposes.
    resolved = str(config_dir.resolve())
    files = [(str(p), p.stat()) for p in sorted(config_dir.rglob("*.yaml"))]
    key = (resolved, tuple(overrides), tuple(extra), tuple((p, s.st_size, s.st_mtime_ns) for p, s in files))
    if key not in _COMPOSED:
        try:
            with initialize_config_dir(config_dir=resolved, version_base=None):
                cfg = hydra_compose(config_name=CONFIG_NAME, overrides=[*overrides, *extra])
            _COMPOSED[key] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
        except (HydraException, OmegaConfBaseException) as exc:
            raise ConfigError(f"cannot compose the configuration with {list(overrides)}: {exc}", config_dir) from exc
    return copy.deepcopy(_COMPOSED[key])


_COMPOSED: dict[tuple[Any, ...], dict[str, Any]] = {}
FREE_FORM = "train.args."  # a trainer's own settings: any key may be set, declared in its YAML or not


def free_form(override: str) -> str:
    """``train.args.KEY=VALUE`` as Hydra's add-or-override (``++``), so a trainer's setting needs no ``+`` whether or
    not its YAML declares it; every other override as given (Hydra refuses keys the schema does not know)."""
    return f"++{override}" if override.startswith(FREE_FORM) and "=" in override else override


def load(
    project: Path = Path(), overrides: Sequence[str] = (), *, params_file: Path | None = None, local: bool = True
) -> Config:
    """The configuration of a command, a stage or the Modal app: the one road.

    ``<project>/conf`` composed by Hydra with ``overrides`` (value overrides and group selections alike), converted
    once into frozen dataclasses. With ``params_file`` (a DVC stage: ``eegcache build --params params.yaml``), the
    composition DVC wrote there (by ``eegcache params`` or ``dvc exp run -S``) is read back instead; it already holds
    its overrides, so giving more is an error (they belong to ``eegcache params`` or ``dvc exp run -S``).
    ``local``: compose this machine's ``conf/local/default.yaml`` last (commands do; the Modal app does not).
    """
    if params_file is None:
        return from_mapping(compose(project, overrides, local), str(Path(project) / CONF_DIR))
    if overrides:
        raise ConfigError(
            f"overrides {' '.join(overrides)} given with a composed params file: compose them into it first "
            "(`eegcache params <overrides>` or `dvc exp run -S <override>`)",
            params_file,
        )
    try:
        raw = trust.loads_yaml(Path(params_file).read_text()) or {}
    except FileNotFoundError as exc:
        raise ConfigError(
            "params file not found (run `eegcache params` to compose it from conf/)", params_file
        ) from exc
    except ValueError as exc:  # not YAML, too large or too deep
        raise ConfigError(str(exc), params_file) from exc
    return from_mapping(raw, str(params_file))


def write_params(project: Path = Path(), overrides: Sequence[str] = (), params_file: Path | None = None) -> Config:
    """Compose ``<project>/conf`` with the overrides, check it and write it to ``params.yaml`` (for ``dvc repro``)."""
    raw = compose(project, overrides)
    config = from_mapping(raw, str(Path(project) / CONF_DIR))
    (params_file or Path(project) / PARAMS_FILE).write_text(yaml.safe_dump(raw, sort_keys=False))
    return config
