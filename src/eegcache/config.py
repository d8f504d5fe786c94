"""Typed configuration: dataclass schemas for every conf group, composed with Hydra, validated once.

Config flows one way: ``conf/`` (Hydra) -> ``params.yaml`` (the composition, what DVC tracks) -> the
frozen dataclasses below -> plain functions. Nothing below the CLI sees a ``DictConfig``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from eegcache.core.identity import stable_hash  # noqa: F401 (config.stable_hash, as before)
from eegcache.core.montage import MONTAGES
from eegcache.errors import ConfigError

CONFIG_NAME = "config"
PARAMS_FILE = "params.yaml"


def _choice(name: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name} = {value!r}; expected one of {', '.join(allowed)}")


@dataclass(frozen=True)
class DataConfig:
    raw_dir: str = "data/tusz_demo"
    split_policy: str = "official_tusz"
    dev_ratio: float = 0.2
    split_seed: int = 0

    def __post_init__(self) -> None:
        _choice("data.split_policy", self.split_policy, ("official_tusz", "patient_disjoint"))
        if not 0.0 < self.dev_ratio < 1.0:
            raise ConfigError(f"data.dev_ratio = {self.dev_ratio}; expected a fraction in (0, 1)")


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

    def __post_init__(self) -> None:
        for source in self.sources:
            _choice("cache.sources entry", source, SOURCES)
        if len(set(self.sources)) != len(self.sources) or not self.sources:
            raise ConfigError(f"cache.sources = {list(self.sources)}; expected distinct entries of {', '.join(SOURCES)}")
        _choice("cache.validation", self.validation, ("fast", "deep"))
        if self.version and not (self.version.endswith(".dir") and len(self.version) == 36):
            raise ConfigError(f"cache.version = {self.version!r}; expected a DVC directory hash '<32 hex digits>.dir'")
        if self.jobs < 0 or min(self.gpu_price_per_hour, self.rebuild_gpu_hours, self.build_seconds_per_gb) < 0:
            raise ConfigError("cache.jobs, prices, hours and seconds must not be negative")


@dataclass(frozen=True)
class ModalConfig:
    """The Modal deployment (``deploy/modal/app.py``): resources, the Volume, the secret and the bucket mounts."""

    app_name: str = "eegcache"
    python_version: str = "3.11"
    gpu: str = "A100-80GB"
    train_timeout_s: int = 6 * 3600
    train_cpu: float = 8.0
    train_memory_mib: int = 65536
    build_cpu: float = 2.0
    build_memory_mib: int = 8192
    build_timeout_s: int = 3600
    build_containers: int = 32  # shards of the recordings for `.map`
    volume_name: str = "eegcache-results"
    volume_path: str = "/results"
    secret_name: str = "aws-s3-secret"
    bucket: str = "eegcache"
    raw_prefix: str = "tusz/v2.0.3/"  # the TUSZ root (holding edf/) in the bucket
    raw_mount: str = "/data"
    cache_prefix: str = "tusz-cache/"  # the DVC remote's prefix (.dvc/config: url = s3://<bucket>/<prefix>)
    cache_mount: str = "/s3-cache"

    def __post_init__(self) -> None:
        for name in ("raw_prefix", "cache_prefix"):
            if not getattr(self, name).endswith("/"):
                raise ConfigError(f"modal.{name} = {getattr(self, name)!r}; a bucket mount's key prefix must end with '/'")
        for name in ("volume_path", "raw_mount", "cache_mount"):
            if not getattr(self, name).startswith("/"):
                raise ConfigError(f"modal.{name} = {getattr(self, name)!r}; expected an absolute path in the container")
        if min(self.train_timeout_s, self.build_timeout_s, self.build_containers, self.train_memory_mib) < 1:
            raise ConfigError("modal timeouts, memory and build_containers must be positive")


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

    def __post_init__(self) -> None:
        _choice("train.balance", self.balance, BALANCE_MODES)
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
    data: DataConfig = field(default_factory=DataConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    build: BuildConfig = field(default_factory=BuildConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    modal: ModalConfig = field(default_factory=ModalConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def _build_section(cls: type, raw: Any, where: str) -> Any:
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
            values[name] = _build_section(_SECTIONS[kind], value, path[name])
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
    return cls(**values)


def validate(raw: dict[str, Any], source: str) -> Config:
    """Check a plain mapping against the schemas; unknown keys and wrong types raise ConfigError."""
    try:
        return _build_section(Config, raw, "")
    except ConfigError as exc:
        raise ConfigError(exc.reason, source) from exc


_SECTIONS: dict[str, type] = {
    cls.__name__: cls for cls in (DataConfig, PreprocessConfig, BuildConfig, CacheConfig, ModalConfig, TrainConfig)
}


def compose(config_dir: Path, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Compose ``conf/`` with Hydra-style overrides (``preprocess=tcp22``, ``build.workers=2``) into a dict."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException

    try:
        with initialize_config_dir(config_dir=str(config_dir.resolve()), version_base=None):
            cfg = hydra_compose(config_name=CONFIG_NAME, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(f"cannot compose configuration: {exc}", config_dir) from exc
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str], source: str) -> dict[str, Any]:
    """Apply Hydra-style value overrides (``key=value``, ``+key=value``, ``~key``) to a plain mapping."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    cfg = OmegaConf.create(raw)
    try:
        parsed = OverridesParser.create().parse_overrides(overrides=list(overrides))
    except HydraException as exc:
        raise ConfigError(f"bad override: {exc}", source) from exc
    for override in parsed:
        key = override.key_or_group
        if override.is_delete():
            OmegaConf.update(cfg, key, None, force_add=True)
            continue
        if OmegaConf.select(cfg, key) is None and not override.is_add():
            raise ConfigError(f"unknown key {key!r} in override {override.input_line!r}", source)
        OmegaConf.update(cfg, key, override.value(), merge=True, force_add=override.is_add())
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def load(params_file: Path = Path(PARAMS_FILE), overrides: Sequence[str] = ()) -> Config:
    """The stage configuration: ``params.yaml`` plus value overrides, validated."""
    try:
        raw = yaml.safe_load(params_file.read_text()) or {}
    except FileNotFoundError as exc:
        raise ConfigError("params file not found (run `eegcache params` to compose it from conf/)", params_file) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML ({exc})", params_file) from exc
    return validate(apply_overrides(raw, overrides, str(params_file)), str(params_file))


def write_params(config_dir: Path, params_file: Path, overrides: Sequence[str] = ()) -> Config:
    """Compose ``conf/`` (with overrides), validate it and write it to ``params_file`` (for ``dvc repro``)."""
    raw = compose(config_dir, overrides)
    config = validate(raw, str(config_dir))
    params_file.write_text(yaml.safe_dump(raw, sort_keys=False))
    return config


def stage_params(config: Config) -> dict[str, Any]:
    """The params the cache depends on (what dvc.yaml lists for the stage), recorded in the metadata; their
    :func:`stable_hash` is the metadata's ``params_hash``."""
    return {
        "data": {k: v for k, v in dataclasses.asdict(config.data).items() if k != "raw_dir"},
        "preprocess": dataclasses.asdict(config.preprocess),
        "build": {"on_error": config.build.on_error},
    }


def as_dict(section: Any) -> dict[str, Any]:
    return dataclasses.asdict(section)
