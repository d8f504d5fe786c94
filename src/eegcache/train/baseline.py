"""The baseline seizure detector: log band power per channel and window, logistic regression, dev metrics.

numpy and scipy (and timescoring for the event metrics). Windows are read a chunk at a time through
:class:`~eegcache.train.dataset.WindowDataset` (memory-mapped), so no cache is ever loaded whole; only the small
feature matrix [windows, features] is kept.

What the metrics file reports (``<split>_`` is the split's name, e.g. ``dev_auroc``):

- a window is *seizure* when at least ``min_seizure_fraction`` of its samples are labelled seizure, else
  *background* (so a window that only grazes a seizure is background, and an alarm on it is a false alarm);
- ``auroc``: area under the ROC curve of the predicted probabilities, by trapezoids between distinct scores, so
  tied scores count half; this equals the Mann-Whitney U statistic divided by (seizure × background windows);
- ``sensitivity``: share of seizure windows with probability >= ``threshold``; ``specificity`` likewise for
  background windows below it;
- ``false_alarms_per_24h``: background windows with probability >= ``threshold`` per 24 h of recording, where each
  window stands for the ``stride_s`` seconds until the next window starts (``hours`` = windows × stride_s / 3600;
  with stride = window this is the usual epoch-based rate). Overlapping windows are not merged into events;
- ``events``, ``event_true_positives``, ``event_false_alarms``, ``event_hours``, ``event_sensitivity``,
  ``event_precision``, ``event_f1``, ``event_false_alarms_per_24h``: the same alarms scored as events, SzCORE's way,
  over every recording of the split (:mod:`eegcache.train.events`: each alarm covers its window's stride, events
  are matched with timescoring's defaults, and a ratio with nothing to count, e.g. precision without alarms, is 0.0).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.signal import welch
from scipy.special import expit

from eegcache.config import Config, TrainConfig
from eegcache.core import store
from eegcache.errors import ConfigError, TrainError
from eegcache.train.dataset import WindowDataset
from eegcache.train.events import dataset_event_metrics

log = logging.getLogger(__name__)

# Share of each seizure bucket in a balanced epoch (``balance: buckets``); empty buckets are left out.
BUCKET_WEIGHTS = {"none": 0.5, "partial": 0.25, "seizure": 0.25}
MAX_ROC_POINTS = 1000  # the plotted curve is thinned to this many points; AUROC uses every point
_CHUNK_VALUES = 1 << 22  # samples read per feature chunk (16 MB as float32), whatever the window length
_WELCH_SEGMENT_S = 2.0  # Welch segments of 2 s: 0.5 Hz resolution, 50 % overlap
_POWER_FLOOR = 1e-12  # keeps log10 finite on zero-filled channels


@dataclass(frozen=True)
class Model:
    """Logistic regression over standardised features: p = sigmoid(((features - mean) / scale) · weights + bias)."""

    mean: np.ndarray  # float64 [features], train-split mean
    scale: np.ndarray  # float64 [features], train-split standard deviation (1 where constant)
    weights: np.ndarray  # float64 [features]
    bias: float

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """Seizure probability per window: float64 [windows] from features [windows, features]."""
        return expit(((features - self.mean) / self.scale) @ self.weights + self.bias)


@dataclass(frozen=True)
class TrainResult:
    metrics: dict[str, float | int]
    metrics_file: Path
    roc_file: Path
    model_file: Path


def check_bands(bands: tuple[tuple[float, float], ...], rate: float, window_samples: int) -> None:
    """ConfigError unless every band lies below Nyquist and holds at least one Welch frequency bin."""
    freqs = np.fft.rfftfreq(_segment_samples(rate, window_samples), d=1.0 / rate)
    for low, high in bands:
        if high > rate / 2 or not np.any((freqs >= low) & (freqs < high)):
            raise ConfigError(
                f"train.bands: {low:g}-{high:g} Hz has no frequency bin below Nyquist "
                f"({rate / 2:g} Hz) at {freqs[1]:g} Hz resolution"
            )


def _segment_samples(rate: float, window_samples: int) -> int:
    return min(window_samples, round(_WELCH_SEGMENT_S * rate))


def window_features(x: np.ndarray, rate: float, bands: tuple[tuple[float, float], ...]) -> np.ndarray:
    """Features of windows ``x`` [windows, channels, samples] (rate in Hz): float64 [windows, channels × (bands + 1)].

    Per channel, in this order: log10 band power (Welch PSD summed over [low, high) Hz, in the cache's units²)
    for each band, then log10 line length (mean absolute sample-to-sample difference).
    """
    freqs, psd = welch(x, fs=rate, nperseg=_segment_samples(rate, x.shape[-1]), axis=-1)
    bin_hz = freqs[1] - freqs[0]
    power = [psd[..., (freqs >= low) & (freqs < high)].sum(axis=-1) * bin_hz for low, high in bands]
    line_length = np.abs(np.diff(x, axis=-1)).mean(axis=-1)
    values = np.stack([*power, line_length], axis=-1).astype(np.float64)
    return np.log10(values + _POWER_FLOOR).reshape(len(x), -1)


def feature_names(channels: tuple[str, ...], bands: tuple[tuple[float, float], ...]) -> list[str]:
    """Names of the columns of :func:`window_features`, e.g. ``FP1 1-4 Hz``, ``FP1 line length``."""
    kinds = [f"{low:g}-{high:g} Hz" for low, high in bands] + ["line length"]
    return [f"{channel} {kind}" for channel in channels for kind in kinds]


def split_features(ds: WindowDataset, bands: tuple[tuple[float, float], ...]) -> np.ndarray:
    """:func:`window_features` of every window of ``ds``, read a chunk of windows at a time (float64 [windows, f])."""
    chunk = max(1, _CHUNK_VALUES // (len(ds.channels) * ds.window_samples))
    out = np.empty((len(ds), len(ds.channels) * (len(bands) + 1)))
    for start in range(0, len(ds), chunk):
        stop = min(start + chunk, len(ds))
        x = ds[range(start, stop)][0]  # one batch, copied once out of the memory maps
        out[start:stop] = window_features(x, ds.sample_rate, bands)
    return out


Draw = Callable[[np.random.Generator], np.ndarray]  # the row indices of one epoch


def fit_logistic(
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    l2: float,
    rng: np.random.Generator,
    sample_weight: np.ndarray | None = None,
    draw: Draw | None = None,
) -> tuple[np.ndarray, float]:
    """Weights [features] and bias of an L2-regularised logistic regression, by mini-batch gradient descent.

    ``x`` float [n, features] (standardise it first), ``y`` 0/1 [n]. Each epoch visits the rows that ``draw(rng)``
    returns (default: every row once, shuffled) in batches of ``batch_size``; ``sample_weight`` [n] scales each
    row's loss. The loss is the mean (weighted) log-loss plus ``l2``/2 · |weights|² (the bias is not penalised).
    Starts from zero, so the result depends only on the data and ``rng``.
    """
    draw = draw or (lambda r: r.permutation(len(x)))
    weights, bias = np.zeros(x.shape[1]), 0.0
    for _ in range(epochs):
        order = draw(rng)
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            error = expit(x[rows] @ weights + bias) - y[rows]
            if sample_weight is not None:
                error = error * sample_weight[rows]
            weights -= learning_rate * (x[rows].T @ error / len(rows) + l2 * weights)
            bias -= learning_rate * float(error.mean())
    return weights, bias


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds): one point per distinct score, from (0, 0) (threshold +inf) to (1, 1).

    Point k counts windows with score >= thresholds[k] as alarms. TrainError unless ``labels`` (0/1) holds both
    classes.
    """
    labels = np.asarray(labels).astype(bool)
    positives = int(labels.sum())
    negatives = len(labels) - positives
    if positives == 0 or negatives == 0:
        missing = "seizure" if positives == 0 else "background"
        raise TrainError(f"ROC undefined: no {missing} windows among {len(labels)}")
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    ranked, hits = np.asarray(scores, dtype=np.float64)[order], labels[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]
    true_pos = np.cumsum(hits)[last_of_tie]
    false_pos = last_of_tie + 1 - true_pos
    fpr = np.r_[0.0, false_pos / negatives]
    tpr = np.r_[0.0, true_pos / positives]
    return fpr, tpr, np.r_[np.inf, ranked[last_of_tie]]


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (trapezoids; ties count half); TrainError unless both classes occur."""
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def thin_curve(fpr: np.ndarray, tpr: np.ndarray, max_points: int = MAX_ROC_POINTS) -> list[dict[str, float]]:
    """At most ``max_points`` (≥ 2) ROC points as records, evenly spaced along the curve, both ends kept."""
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(len(fpr), max_points)).round().astype(int))
    return [{"fpr": round(float(fpr[k]), 6), "tpr": round(float(tpr[k]), 6)} for k in keep]


def false_alarms_per_24h(false_alarms: int, windows: int, stride_s: float) -> float:
    """False alarms per 24 h when ``windows`` windows, one every ``stride_s`` seconds, tile the recordings."""
    return false_alarms / (windows * stride_s) * 86400.0


def detection_metrics(
    labels: np.ndarray, scores: np.ndarray, threshold: float, stride_s: float, split: str
) -> dict[str, float | int]:
    """AUROC, sensitivity, specificity and false alarms per 24 h at ``threshold``, keyed ``<split>_<name>``."""
    labels = np.asarray(labels).astype(bool)
    alarms = np.asarray(scores) >= threshold
    seizure = int(labels.sum())
    false_alarms = int(np.count_nonzero(alarms & ~labels))
    values: dict[str, float | int] = {
        "windows": len(labels),
        "seizure_windows": seizure,
        "hours": len(labels) * stride_s / 3600,
        "auroc": auroc(labels, scores),
        "sensitivity": np.count_nonzero(alarms & labels) / seizure,
        "specificity": 1 - false_alarms / (len(labels) - seizure),
        "false_alarms": false_alarms,
        "false_alarms_per_24h": false_alarms_per_24h(false_alarms, len(labels), stride_s),
    }
    return {f"{split}_{k}": round(float(v), 6) if isinstance(v, float) else v for k, v in values.items()}


def _labelled_split(cache_dir: Path, split: str, cfg: TrainConfig, role: str) -> tuple[WindowDataset, np.ndarray]:
    """The split's windows and their 0/1 labels; TrainError if it has no windows or lacks either class.

    Labels come from the metadata's seizure intervals, so this fails before any recording is read.
    """
    consequence = {"train": "there is nothing to learn", "eval": "AUROC and sensitivity are undefined"}[role]
    ds = WindowDataset(
        cache_dir, split, cfg.window_s, cfg.stride_s, label="fraction", min_seizure_fraction=cfg.min_seizure_fraction
    )
    labels = ds.window_labels  # the one window-label rule, the dataset's
    where = cache_dir / store.METADATA_NAME
    if len(ds) == 0:
        raise TrainError(
            f"split {split!r} has no {cfg.window_s:g} s windows: all {len(ds.files)} recordings are "
            "shorter (lower train.window_s)",
            where,
        )
    for value, kind in ((1, "seizure"), (0, "background")):
        if not np.any(labels == value):
            raise TrainError(
                f"split {split!r} has no {kind} windows among its {len(ds)} (a window is seizure when "
                f"at least {cfg.min_seizure_fraction:g} of its {cfg.window_s:g} s is): {consequence}",
                where,
            )
    return ds, labels


def _epoch_plan(ds: WindowDataset, labels: np.ndarray, balance: str) -> tuple[np.ndarray | None, Draw | None]:
    """(sample_weight, draw) for :func:`fit_logistic` under ``balance`` (see config.BALANCE_MODES)."""
    if balance == "buckets":  # an empty bucket's share goes to the others (the dataset says so once)
        return None, lambda rng: ds.balanced_indices(len(ds), rng, BUCKET_WEIGHTS)
    if balance == "class_weights":
        counts = np.bincount(labels, minlength=2)
        return (len(labels) / (2.0 * counts))[labels], None
    return None, None


def run_train(config: Config, base_dir: Path = Path()) -> TrainResult:
    """Train on ``train.train_split`` of the cache at ``build.out_dir``, evaluate on ``train.eval_split``, write
    the metrics, ROC points and model files; paths are relative to ``base_dir``."""
    cfg = config.train
    cache_dir = base_dir / config.build.out_dir
    bands = cfg.band_edges
    train_ds, train_labels = _labelled_split(cache_dir, cfg.train_split, cfg, "train")
    eval_ds, eval_labels = _labelled_split(cache_dir, cfg.eval_split, cfg, "eval")
    check_bands(bands, train_ds.sample_rate, train_ds.window_samples)

    log.info("features of %d %s and %d %s windows", len(train_ds), cfg.train_split, len(eval_ds), cfg.eval_split)
    train_x = split_features(train_ds, bands)
    eval_x = split_features(eval_ds, bands)
    mean, scale = train_x.mean(axis=0), train_x.std(axis=0)
    scale[scale == 0] = 1.0

    rng = np.random.default_rng(cfg.seed)
    sample_weight, draw = _epoch_plan(train_ds, train_labels, cfg.balance)
    weights, bias = fit_logistic(
        (train_x - mean) / scale,
        train_labels,
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate,
        l2=cfg.l2,
        rng=rng,
        sample_weight=sample_weight,
        draw=draw,
    )
    model = Model(mean, scale, weights, bias)

    train_scores, eval_scores = model.probabilities(train_x), model.probabilities(eval_x)
    metrics: dict[str, Any] = {"threshold": cfg.threshold}
    for ds, labels, scores in ((train_ds, train_labels, train_scores), (eval_ds, eval_labels, eval_scores)):
        metrics.update(detection_metrics(labels, scores, cfg.threshold, cfg.stride_s, ds.split))
        metrics.update(dataset_event_metrics(ds, scores >= cfg.threshold))
    fpr, tpr, _ = roc_curve(eval_labels, eval_scores)

    paths = [base_dir / name for name in (cfg.metrics_file, cfg.roc_file, cfg.model_file)]
    store.atomic_write(paths[0], store.dump_json(metrics))
    store.atomic_write(paths[1], store.dump_json(thin_curve(fpr, tpr)))
    store.atomic_write(paths[2], store.dump_json(_model_record(model, train_ds, cfg)))
    return TrainResult(metrics, *paths)


def baseline(
    *, cache_dir: Path, config: Config, run_dir: Path, checkpoint_dir: Path, commit: Callable[[], None]
) -> dict[str, Any]:
    """The default ``train.entrypoint`` (the trainer signature is in :mod:`eegcache.train.runs`): :func:`run_train` on
    ``cache_dir``, its metrics, ROC and model files in ``run_dir``. It fits in seconds on CPUs, so it saves no
    checkpoint: a retried run fits again from the start (``checkpoint_dir`` and ``commit`` are not used). Its
    settings are the typed ``train.*`` keys: ``train.args`` (another trainer's) is refused, never ignored."""
    if config.train.args:
        raise ConfigError(
            f"train.args = {config.train.args}: the baseline ({config.train.entrypoint}) takes no free-form settings; "
            "its own are train.* keys (e.g. train.epochs=10), or select another trainer with train=NAME"
        )
    files = {
        name: str(run_dir / Path(getattr(config.train, name)).name)
        for name in ("metrics_file", "roc_file", "model_file")
    }
    config = dataclasses.replace(
        config,
        build=dataclasses.replace(config.build, out_dir=str(cache_dir)),
        train=dataclasses.replace(config.train, **files),
    )
    return run_train(config).metrics


def _model_record(model: Model, ds: WindowDataset, cfg: TrainConfig) -> dict[str, Any]:
    """Everything needed to apply the model to a window of the same cache format, as plain JSON data."""
    return {
        "sample_rate": ds.sample_rate,
        "channels": list(ds.channels),
        "window_s": cfg.window_s,
        "bands_hz": [list(band) for band in cfg.band_edges],
        "features": feature_names(ds.channels, cfg.band_edges),
        "mean": _stable(model.mean),
        "scale": _stable(model.scale),
        "weights": _stable(model.weights),
        "bias": _stable(np.float64(model.bias)),
    }


def _stable(values: np.ndarray) -> Any:
    """``values`` as JSON numbers rounded to 10 significant digits: a retrain on the same inputs writes the same file
    (the last digits of a float sum depend on the BLAS and its thread count, not on the data)."""
    return np.vectorize(lambda v: float(f"{v:.10g}"), otypes=[float])(values).tolist()
