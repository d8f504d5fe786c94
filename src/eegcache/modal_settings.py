"""The Modal deployment's settings (the ``modal`` config group, read by ``deploy/modal/app.py``) and what its
containers cost at the configured prices. Plain data: this module never imports Modal. The configuration road keeps
the ``modal`` group as a mapping; :func:`modal_settings` types and checks it."""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eegcache import config, trust
from eegcache.errors import ConfigError

MAX_TIMEOUT_S = 24 * 3600  # Modal's limit for one function call
ENV_OVERRIDES = "EEGCACHE_MODAL"  # one-off modal.* overrides for one `modal run`, e.g. "modal.gpu=H100"
ENV_SETTINGS = "EEGCACHE_MODAL_SETTINGS"  # the launching machine's modal group, as the image carries it (JSON)


@dataclass(frozen=True)
class ModalConfig:
    """Resources per function, retries, the image's extras, the Volume, the secret, the bucket mounts, prices."""

    app_name: str = "eegcache"
    python_version: str = "3.11"
    gpu: str = "A100-80GB"  # train only
    train_timeout_s: int = 6 * 3600
    train_cpu: float = 8.0
    train_memory_mib: int = 65536
    train_retries: int = 2  # preemption: the trainer resumes from its checkpoint directory
    prepare_cpu: float = 2.0  # resolves the version onto the Volume before the GPU starts
    prepare_memory_mib: int = 4096
    prepare_timeout_s: int = 3600
    build_cpu: float = 2.0  # each build_shard container
    build_memory_mib: int = 8192
    build_timeout_s: int = 3600  # one shard
    build_cache_timeout_s: int = 4 * 3600  # plans, waits for every shard, merges, pushes: longer than one shard
    build_containers: int = 32  # shards of the recordings for `.starmap`
    verify_cpu: float = 1.0
    verify_memory_mib: int = 2048
    verify_timeout_s: int = 1800
    retries: int = 2  # idempotent CPU functions: build_shard, prepare, verify
    local_packages: tuple[str, ...] = ()  # importable names of the user's local packages added to the image
    pip_extra: tuple[str, ...] = ()  # extra pinned requirements for the image (e.g. a trainer's torch==...)
    volume_name: str = "eegcache-results"  # mounted at paths.volume_root (paths=modal)
    secret_name: str = "aws-s3-secret"
    bucket: str = "eegcache"
    raw_prefix: str = "tusz/v2.0.3/"  # the TUSZ root (holding edf/) in the bucket, mounted at data.raw_dir
    cache_prefix: str = "tusz-cache/"  # the DVC remote's prefix (.dvc/config: url = s3://<bucket>/<prefix>)
    gpu_usd_per_hour: float = 2.50  # estimates for the run's cost report (conf/modal/default.yaml: source, date)
    cpu_usd_per_core_hour: float = 0.0473
    memory_usd_per_gib_hour: float = 0.0080
    RANGES = {  # inclusive bounds of the numbers (config.section checks them); Modal's own limits below
        **{f"{f}_cpu": (0.125, 64.0) for f in ("train", "prepare", "build", "verify")},
        **{f"{f}_memory_mib": (1, 1 << 20) for f in ("train", "prepare", "build", "verify")},
        **{f"{f}_timeout_s": (1, 24 * 3600) for f in ("train", "prepare", "build", "build_cache", "verify")},
        "train_retries": (0, 10),
        "retries": (0, 10),
        "build_containers": (1, 1_000),
        "gpu_usd_per_hour": (0.0, 1_000.0),
        "cpu_usd_per_core_hour": (0.0, 1_000.0),
        "memory_usd_per_gib_hour": (0.0, 1_000.0),
    }

    def __post_init__(self) -> None:
        if not self.gpu.strip():
            raise ConfigError(
                "modal.gpu is empty: the train function would run on no GPU; name one (e.g. A100-80GB, H100)"
            )
        for name in ("raw_prefix", "cache_prefix"):
            if not getattr(self, name).endswith("/"):
                raise ConfigError(
                    f"modal.{name} = {getattr(self, name)!r}; a bucket mount's key prefix must end with '/'"
                )
        timeouts = {
            n: getattr(self, n)
            for n in (
                "train_timeout_s",
                "prepare_timeout_s",
                "build_timeout_s",
                "build_cache_timeout_s",
                "verify_timeout_s",
            )
        }
        if not all(1 <= t <= MAX_TIMEOUT_S for t in timeouts.values()):
            raise ConfigError(f"modal timeouts must be 1 to {MAX_TIMEOUT_S} s (Modal's limit): {timeouts}")
        if self.build_cache_timeout_s <= self.build_timeout_s:
            raise ConfigError(
                f"modal.build_cache_timeout_s = {self.build_cache_timeout_s} must exceed "
                f"build_timeout_s = {self.build_timeout_s}: build_cache waits for the shards"
            )
        sizes = {n: v for n, v in vars(self).items() if n.endswith(("_cpu", "_memory_mib", "_containers"))}
        if any(isinstance(v, bool) or not v > 0 for v in sizes.values()):  # 0: Modal's defaults, reported as free
            raise ConfigError(f"modal cpus, memory and build_containers must be positive: {sizes}")
        if not 0 <= min(self.retries, self.train_retries) <= max(self.retries, self.train_retries) <= 10:
            raise ConfigError("modal.retries and modal.train_retries must be 0 to 10 (Modal's limit)")


@dataclass(frozen=True)
class Spent:
    """What one container (one function call) cost: its seconds at the configured hourly prices (estimates)."""

    step: str
    seconds: float
    cpu: float
    memory_mib: int
    gpu: str | None

    def usd(self, settings: ModalConfig) -> float:
        per_hour = self.cpu * settings.cpu_usd_per_core_hour + self.memory_mib / 1024 * settings.memory_usd_per_gib_hour
        per_hour += settings.gpu_usd_per_hour if self.gpu else 0.0
        return self.seconds / 3600 * per_hour


def cost_lines(spent: list[Spent], settings: ModalConfig) -> list[str]:
    """One line per container and a total: seconds, resources and estimated dollars."""
    lines = [
        f"{s.step:<10} {s.seconds:9.1f} s  {s.gpu or 'no GPU':<10} {s.cpu:g} CPU {s.memory_mib / 1024:g} GiB  "
        f"~${s.usd(settings):.4f}"
        for s in spent
    ]
    total = sum(s.usd(settings) for s in spent)
    lines.append(
        f"{'total':<10} {sum(s.seconds for s in spent):9.1f} s  estimated ~${total:.4f} "
        f"(prices: conf/modal/default.yaml)"
    )
    return lines


def modal_settings(cfg: config.Config, source: object = None) -> ModalConfig:
    """The ``modal`` group of a composed configuration, typed and checked (unknown keys, wrong types, limits);
    a ConfigError names ``source`` (the conf/ or params file it was composed from), as the other groups' do."""
    try:
        return config.section(ModalConfig, cfg.modal, "modal")
    except ConfigError as exc:
        raise ConfigError(exc.reason, exc.path or source) from exc


def modal_keys(overrides: Sequence[str]) -> list[str]:
    """The overrides that set the ``modal`` group or one of its keys (``modal.gpu=H100``, ``+modal.x=1``)."""
    return [o for o in overrides if o.lstrip("+~").split("=", 1)[0].split(".", 1)[0] == "modal"]


def refuse_modal_overrides(overrides: Sequence[str], where: str) -> None:
    """ConfigError for ``modal.*`` among a call's overrides: the image and the resources are fixed when
    ``modal run`` starts, from conf/ and conf/local/default.yaml there (or the EEGCACHE_MODAL variable)."""
    named = modal_keys(overrides)
    if named:
        raise ConfigError(
            f"{where} {' '.join(named)}: the modal group shapes the image and the resources, which are fixed when "
            f"`modal run` starts: set it in conf/local/default.yaml on this machine, or for one run "
            f"`{ENV_OVERRIDES}='{' '.join(named)}' modal run ...`"
        )


def launch_settings(
    project: Path, paths: Sequence[str], environ: Mapping[str, str]
) -> tuple[ModalConfig, dict[str, Any]]:
    """The Modal settings of this launch and their mapping: on the launching machine, ``conf/`` plus this machine's
    ``conf/local/default.yaml`` plus ``EEGCACHE_MODAL`` (``modal.*`` overrides only); in a container, the mapping
    the image carries (``EEGCACHE_MODAL_SETTINGS``), so both sides use the same settings."""
    if ENV_SETTINGS in environ:
        try:
            raw = trust.loads_json(environ[ENV_SETTINGS])
        except ValueError as exc:
            raise ConfigError(
                f"{ENV_SETTINGS} is not JSON ({exc}): the image sets it; unset it on this machine"
            ) from exc
        return config.section(ModalConfig, raw, "modal"), raw
    try:
        extra = shlex.split(environ.get(ENV_OVERRIDES, ""))
    except ValueError as exc:
        raise ConfigError(f"{ENV_OVERRIDES}: {exc}; quote values as in a shell") from exc
    others = [o for o in extra if o not in modal_keys(extra)]
    if others:
        raise ConfigError(f"{ENV_OVERRIDES} holds {' '.join(others)}: only modal.* keys go there (others: --overrides)")
    try:
        raw = config.compose(project, [*paths, *extra], local=True)["modal"]
        return config.section(ModalConfig, raw, "modal"), raw
    except ConfigError as exc:
        where = f"{project / config.CONF_DIR} (+ conf/local" + (f", {ENV_OVERRIDES}" if extra else "") + ")"
        raise ConfigError(exc.reason, where) from exc
