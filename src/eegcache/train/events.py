"""Event-level seizure detection metrics, SzCORE's: window alarms scored as events with timescoring.

Window metrics count windows; a clinician counts seizures found and false alarms raised. :func:`event_metrics` scores
each recording's hypothesis (alarm intervals) against its reference (seizure intervals) with timescoring's
``EventScoring`` (https://github.com/esl-epfl/epilepsy_performance_metrics, the SzCORE scorer), sums the counts over
the recordings and computes the ratios from the sums (SzCORE's "cumulated" average, not a mean of per-recording
ratios). Any trainer can call it: build one :class:`Recording` per recording (:func:`mask_intervals` turns a 0/1 mask
at a rate into intervals, :func:`window_intervals` turns per-window alarms into them), or hand
:func:`dataset_event_metrics` a :class:`~eegcache.train.dataset.WindowDataset` and one alarm per window.

The matching is timescoring's, with SzCORE's parameters as the defaults (``EventScoring.Parameters``, timescoring
0.0.7), all keyword arguments of :func:`event_metrics`:

- ``min_duration_between_events_s`` = 90: reference events, and alarm events, separated by less than this are merged
  into one (first, in each annotation on its own);
- ``max_event_duration_s`` = 300: then events longer than this are split into pieces of at most this length (a
  20-minute false alarm counts 4 times);
- ``tolerance_start_s`` = 30, ``tolerance_end_s`` = 60: each reference event is widened by these before and after;
- ``min_overlap`` = 0: a reference event is *detected* (a true positive) when more than this share of its widened
  span is covered by alarms (0: any overlap); an alarm event that touches no detected, widened reference event is a
  *false alarm*.

Everything is rasterised at timescoring's own 10 Hz (events closer than 0.1 s are one event).

Keys (``<split>_`` prefixed, floats rounded to 6 decimals as the window metrics): ``events`` (reference events after
the merging and splitting above), ``event_true_positives``, ``event_false_alarms``, ``event_hours`` (the recordings'
whole duration), ``event_sensitivity`` = TP / events, ``event_precision`` = TP / (TP + false alarms),
``event_f1`` = 2 TP / (2 TP + false alarms + missed events) (timescoring's formula) and
``event_false_alarms_per_24h`` = false alarms / duration × 24 h.

Undefined ratios: sensitivity without reference events, precision without any alarm (TP + false alarms = 0), F1
without either, and the rate over no recorded time have no value. timescoring gives NaN, which is not JSON (the
metrics files are read by DVC); here they are ``undefined`` (default 0.0), so the keys are always the same, and the
counts beside them tell which: ``events`` = 0 means the sensitivity is not a measurement. Pass
``undefined=float("nan")`` for timescoring's NaN (e.g. to average per subject with ``numpy.nanmean``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from timescoring import scoring
from timescoring.annotations import Annotation

from eegcache.train.dataset import WindowDataset

SCORING_HZ = 10  # timescoring's EventScoring resamples every annotation to 10 Hz; annotations are built at it
COVERS = ("stride", "window")  # what a window's alarm covers: [start, start + stride) or [start, start + window)

Interval = tuple[float, float]  # [start, stop) in seconds from the recording's start


@dataclass(frozen=True)
class Recording:
    """One recording to score: its duration, the reference seizures and the hypothesis alarms as [start, stop)
    intervals in seconds, each within [0, duration_s] (ValueError otherwise; overlapping intervals are united)."""

    duration_s: float
    seizures: Sequence[Interval] = ()
    alarms: Sequence[Interval] = ()

    def __post_init__(self) -> None:
        if not self.duration_s >= 0:
            raise ValueError(f"duration_s={self.duration_s!r}: expected seconds >= 0")
        slack = 1e-9 * max(1.0, self.duration_s)
        for name in ("seizures", "alarms"):
            for start, stop in getattr(self, name):
                if not 0 <= start < stop <= self.duration_s + slack:
                    raise ValueError(f"{name} interval [{start}, {stop}) s is not within [0, {self.duration_s}] s")


def mask_intervals(mask: Sequence[int] | np.ndarray, rate: float) -> list[Interval]:
    """The runs of 1 (or True) in a 0/1 ``mask`` sampled at ``rate`` Hz (per sample, or per window at 1 / stride) as
    [start, stop) intervals in seconds: sample k stands for [k / rate, (k + 1) / rate)."""
    values = np.asarray(mask)
    if values.ndim != 1 or not np.isin(values, (0, 1)).all():
        raise ValueError("mask: expected a one-dimensional array of 0/1 or booleans")
    edges = np.diff(np.concatenate(([0], values.astype(np.int8), [0])))
    rises, falls = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [(float(a) / rate, float(b) / rate) for a, b in zip(rises, falls, strict=True)]


def window_intervals(
    alarms: Sequence[int] | np.ndarray, starts_s: Sequence[float] | np.ndarray, span_s: float
) -> list[Interval]:
    """The union of [start, start + ``span_s``) over the windows with an alarm: ``alarms`` 0/1 per window,
    ``starts_s`` each window's start in seconds. ``span_s`` is the stride (each instant belongs to the last window
    started at or before it, as :func:`dataset_event_metrics` does by default) or the window length."""
    flags = np.asarray(alarms)
    starts = np.asarray(starts_s, dtype=np.float64)
    if flags.shape != starts.shape or flags.ndim != 1 or not np.isin(flags, (0, 1)).all():
        raise ValueError(f"alarms {flags.shape} must be 0/1, one per window start {starts.shape}")
    if not span_s > 0:
        raise ValueError(f"span_s={span_s!r}: expected seconds > 0")
    begin = np.sort(starts[flags.astype(bool)])
    if len(begin) == 0:
        return []
    reach = np.maximum.accumulate(begin + span_s)  # the furthest end of the windows so far
    first = np.flatnonzero(np.r_[True, begin[1:] > reach[:-1]])  # a window that starts after all before it ended
    last = np.r_[first[1:] - 1, len(begin) - 1]
    return [(float(begin[a]), float(reach[b])) for a, b in zip(first, last, strict=True)]


def _annotation(intervals: Sequence[Interval], samples: int) -> Annotation:
    """``intervals`` as a timescoring Annotation at :data:`SCORING_HZ`, its events read back from the mask (so
    overlapping or touching intervals are one event, as in a mask-built hypothesis)."""
    raster = Annotation([(float(a), float(b)) for a, b in intervals], SCORING_HZ, samples)
    return Annotation(raster.mask, SCORING_HZ)


def _counts(recording: Recording, parameters: scoring.EventScoring.Parameters) -> tuple[int, int, int]:
    """(reference events, true positives, false alarms) of one recording by timescoring's EventScoring."""
    samples = round(recording.duration_s * SCORING_HZ)
    if samples == 0:  # nothing recorded, nothing to score (timescoring cannot hold an empty mask)
        return 0, 0, 0
    score = scoring.EventScoring(
        _annotation(recording.seizures, samples), _annotation(recording.alarms, samples), parameters
    )
    return int(score.refTrue), int(score.tp), int(score.fp)


def event_metrics(
    recordings: Iterable[Recording],
    split: str,
    *,
    tolerance_start_s: float = 30.0,
    tolerance_end_s: float = 60.0,
    min_overlap: float = 0.0,
    max_event_duration_s: float = 300.0,
    min_duration_between_events_s: float = 90.0,
    undefined: float = 0.0,
) -> dict[str, float | int]:
    """SzCORE event metrics of ``recordings`` (counts summed, then ratios), keyed ``<split>_<name>``; the parameters,
    the keys and the ``undefined`` policy are in the module docstring."""
    parameters = scoring.EventScoring.Parameters(
        toleranceStart=tolerance_start_s,
        toleranceEnd=tolerance_end_s,
        minOverlap=min_overlap,
        maxEventDuration=max_event_duration_s,
        minDurationBetweenEvents=min_duration_between_events_s,
    )
    events = tp = fp = 0
    seconds = 0.0
    for recording in recordings:
        ref_true, hits, false_alarms = _counts(recording, parameters)
        events, tp, fp, seconds = events + ref_true, tp + hits, fp + false_alarms, seconds + recording.duration_s

    def ratio(numerator: float, denominator: float) -> float:
        return numerator / denominator if denominator > 0 else undefined

    values: dict[str, float | int] = {
        "events": events,
        "event_true_positives": tp,
        "event_false_alarms": fp,
        "event_hours": seconds / 3600,
        "event_sensitivity": ratio(tp, events),
        "event_precision": ratio(tp, tp + fp),
        "event_f1": ratio(2 * tp, 2 * tp + fp + (events - tp)),
        "event_false_alarms_per_24h": ratio(fp * 86400.0, seconds),
    }
    return {f"{split}_{k}": round(float(v), 6) if isinstance(v, float) else v for k, v in values.items()}


def dataset_recordings(ds: WindowDataset, alarms: Sequence[int] | np.ndarray, cover: str = "stride") -> list[Recording]:
    """One :class:`Recording` per recording of ``ds`` (``ds.files`` order), from one 0/1 alarm per window.

    The reference is each file's seizure intervals from the cache metadata (``ds.seizures``), its duration the whole
    recording. The hypothesis: a window's alarm covers ``cover`` = ``"stride"``, [start, start + stride) (default:
    each instant is attributed to exactly one window, the last one to start at or before it, the tiling the
    window-level false alarms per 24 h use; with stride = window it is the window), or ``"window"``,
    [start, start + window) (with overlapping windows an alarm then reaches back window − stride seconds before the
    evidence that raised it). Alarms of overlapping or touching windows are one interval. SzCORE scores a
    per-sample hypothesis and prescribes no window rule; this is the choice. Recordings shorter than one window have
    no windows, so no alarms: their seizures count as missed and their time as recorded, as SzCORE scores every
    recording.
    """
    flags = np.asarray(alarms)
    if flags.shape != (len(ds),) or not np.isin(flags, (0, 1)).all():
        raise ValueError(f"alarms {flags.shape}: expected 0/1 or booleans, one per window of the dataset ({len(ds)})")
    if cover not in COVERS:
        raise ValueError(f"cover={cover!r}: expected one of {COVERS}")
    rate = ds.sample_rate
    span_s = (ds.stride_samples if cover == "stride" else ds.window_samples) / rate
    alarmed = np.flatnonzero(flags)
    order = np.argsort(ds.window_file[alarmed], kind="stable")  # the alarmed windows grouped by recording
    files, begins = ds.window_file[alarmed][order], ds.window_start[alarmed][order] / rate
    bounds = np.searchsorted(files, np.arange(len(ds.files) + 1))
    recordings = []
    for k, (samples, seizures) in enumerate(zip(ds.file_samples.tolist(), ds.seizures, strict=True)):
        starts = begins[bounds[k] : bounds[k + 1]]
        recordings.append(
            Recording(
                duration_s=samples / rate,
                seizures=[(a / rate, b / rate) for a, b in seizures],
                alarms=window_intervals(np.ones(len(starts), dtype=np.uint8), starts, span_s),
            )
        )
    return recordings


def dataset_event_metrics(
    ds: WindowDataset,
    alarms: Sequence[int] | np.ndarray,
    split: str | None = None,
    *,
    cover: str = "stride",
    **options: float,
) -> dict[str, float | int]:
    """:func:`event_metrics` of ``ds``'s recordings given one 0/1 alarm per window (e.g. ``probabilities >=
    threshold``), keyed by ``split`` (default ``ds.split``); ``cover`` as in :func:`dataset_recordings`, ``options``
    the keyword arguments of :func:`event_metrics`."""
    recordings = dataset_recordings(ds, alarms, cover)
    return event_metrics(recordings, ds.split if split is None else split, **options)
