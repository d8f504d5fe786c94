"""Event-level metrics (SzCORE scoring by timescoring) against hand-computed cases.

Unless a test says otherwise: one hour recorded, one seizure at [600, 660) s, SzCORE's parameters, so the seizure's
widened span is [570, 720) s (30 s before, 60 s after).
"""

import inspect
import json
import math

import numpy as np
import pytest
from timescoring.scoring import EventScoring

from eegcache.train import events
from eegcache.train.dataset import WindowDataset
from eegcache.train.events import Recording, event_metrics
from tests.unit.test_dataset import RATE, recording, write_cache

HOUR = 3600.0
SEIZURE = (600.0, 660.0)


def scored(*recordings: Recording, **options) -> dict:
    """The metrics without the split prefix."""
    return {k.removeprefix("dev_"): v for k, v in event_metrics(recordings, "dev", **options).items()}


def counts(m: dict) -> tuple[int, int, int]:
    return m["events"], m["event_true_positives"], m["event_false_alarms"]


def test_the_defaults_are_szcores_as_timescoring_has_them():
    ours = inspect.signature(event_metrics).parameters
    theirs = inspect.signature(EventScoring.Parameters.__init__).parameters
    pairs = {
        "tolerance_start_s": "toleranceStart",
        "tolerance_end_s": "toleranceEnd",
        "min_overlap": "minOverlap",
        "max_event_duration_s": "maxEventDuration",
        "min_duration_between_events_s": "minDurationBetweenEvents",
    }
    assert {k: ours[k].default for k in pairs} == {k: theirs[v].default for k, v in pairs.items()}
    assert [ours[k].default for k in pairs] == [30, 60, 0, 300, 90]


def test_one_seizure_detected_exactly():
    m = scored(Recording(HOUR, [SEIZURE], [SEIZURE]))
    assert m == {
        "events": 1,
        "event_true_positives": 1,
        "event_false_alarms": 0,
        "event_hours": 1.0,
        "event_sensitivity": 1.0,
        "event_precision": 1.0,
        "event_f1": 1.0,
        "event_false_alarms_per_24h": 0.0,
    }
    assert set(event_metrics([Recording(HOUR, [SEIZURE], [SEIZURE])], "eval")) == {f"eval_{k}" for k in m}


@pytest.mark.parametrize(
    ("alarm", "detected"),
    [
        ((575.0, 585.0), True),  # 25 s before the onset, inside the 30 s start tolerance
        ((560.0, 570.0), False),  # ends where the widened span begins (570 s): no overlap
        ((560.0, 571.0), True),  # overlaps it by 1 s: any overlap counts
        ((715.0, 725.0), True),  # starts 55 s after the end, inside the 60 s end tolerance
        ((720.0, 730.0), False),  # starts where the widened span ends
        ((640.0, 700.0), True),  # inside the seizure, running on after it
    ],
)
def test_an_alarm_offset_from_the_seizure_inside_or_outside_the_tolerance(alarm, detected):
    m = scored(Recording(HOUR, [SEIZURE], [alarm]))
    if detected:
        assert counts(m) == (1, 1, 0) and (m["event_sensitivity"], m["event_precision"], m["event_f1"]) == (1, 1, 1)
    else:  # missed, and the alarm is a false one: 1 per hour = 24 per 24 h
        assert counts(m) == (1, 0, 1)
        assert (m["event_sensitivity"], m["event_precision"], m["event_f1"]) == (0.0, 0.0, 0.0)
        assert m["event_false_alarms_per_24h"] == 24.0


def test_tolerances_are_keyword_arguments():
    late = Recording(HOUR, [SEIZURE], [(715.0, 725.0)])  # 55 s after the end
    assert counts(scored(late)) == (1, 1, 0)
    assert counts(scored(late, tolerance_end_s=50.0)) == (1, 0, 1)
    early = Recording(HOUR, [SEIZURE], [(575.0, 585.0)])  # 15 s to 25 s before the onset
    assert counts(scored(early, tolerance_start_s=20.0)) == (1, 1, 0)
    assert counts(scored(early, tolerance_start_s=10.0)) == (1, 0, 1)


def test_min_overlap_is_a_share_of_the_widened_seizure():
    # the widened span is 150 s long; an alarm of 15 s inside it covers 0.1 of it, and must cover more than min_overlap
    rec = Recording(HOUR, [SEIZURE], [(620.0, 635.0)])
    assert counts(scored(rec, min_overlap=0.05)) == (1, 1, 0)
    assert counts(scored(rec, min_overlap=0.1)) == (1, 0, 1)


def test_a_false_alarm_far_from_any_seizure():
    m = scored(Recording(HOUR, [SEIZURE], [SEIZURE, (2000.0, 2010.0)]))
    assert counts(m) == (1, 1, 1)
    assert m["event_sensitivity"] == 1.0 and m["event_precision"] == 0.5
    assert m["event_f1"] == round(2 / 3, 6)  # 2 TP / (2 TP + 1 false alarm + 0 missed)
    assert m["event_false_alarms_per_24h"] == 24.0


def test_alarms_closer_than_min_duration_between_events_are_one_event():
    # 70 s between them (< 90 s): one false alarm; 90 s is not less than 90 s: two
    assert scored(Recording(HOUR, [], [(2000.0, 2010.0), (2080.0, 2090.0)]))["event_false_alarms"] == 1
    assert scored(Recording(HOUR, [], [(2000.0, 2010.0), (2100.0, 2110.0)]))["event_false_alarms"] == 2
    two = scored(Recording(HOUR, [], [(2000.0, 2010.0), (2080.0, 2090.0)]), min_duration_between_events_s=60.0)
    assert two["event_false_alarms"] == 2
    # the seizures are merged alike: two 20 s seizures 60 s apart are one reference event, found by one alarm
    assert counts(scored(Recording(HOUR, [(600.0, 620.0), (680.0, 700.0)], [(690.0, 695.0)]))) == (1, 1, 0)


def test_long_events_are_split_at_max_event_duration():
    # a 20-minute false alarm is 4 of 5 minutes; a 12-minute seizure is 3 events (5 + 5 + 2 min), one alarm finds one
    assert scored(Recording(HOUR, [], [(1200.0, 2400.0)]))["event_false_alarms"] == 4
    assert scored(Recording(HOUR, [], [(1200.0, 2400.0)]), max_event_duration_s=600.0)["event_false_alarms"] == 2
    m = scored(Recording(HOUR, [(600.0, 1320.0)], [(610.0, 620.0)]))
    assert counts(m) == (3, 1, 0) and m["event_sensitivity"] == round(1 / 3, 6)


def test_several_recordings_are_summed_before_the_ratios():
    m = scored(
        Recording(HOUR, [SEIZURE], [SEIZURE, (2000.0, 2010.0)]),  # found, one false alarm
        Recording(2 * HOUR, [SEIZURE, (5000.0, 5060.0)], [(5010.0, 5020.0)]),  # one of two found
        Recording(3 * HOUR, [], [(100.0, 110.0), (9000.0, 9010.0)]),  # no seizure, two false alarms
    )
    assert counts(m) == (3, 2, 3) and m["event_hours"] == 6.0
    assert m["event_sensitivity"] == round(2 / 3, 6)  # not the mean of 1, 1/2 and undefined
    assert m["event_precision"] == 0.4  # 2 / (2 + 3)
    assert m["event_f1"] == 0.5  # 4 / (4 + 3 false alarms + 1 missed)
    assert m["event_false_alarms_per_24h"] == 12.0  # 3 in 6 h
    assert json.dumps(m)


def test_false_alarms_per_24h_arithmetic():
    # 3 false alarms in 2 h = 36 per 24 h; 1 in 30 min = 48; 1 in exactly a day = 1
    assert scored(Recording(2 * HOUR, [], [(100.0, 101.0), (1000.0, 1001.0), (5000.0, 5001.0)]))[
        "event_false_alarms_per_24h"
    ] == pytest.approx(36.0)
    assert scored(Recording(1800.0, [], [(100.0, 101.0)]))["event_false_alarms_per_24h"] == pytest.approx(48.0)
    day = scored(Recording(86400.0, [], [(100.0, 101.0)]))
    assert (day["event_false_alarms_per_24h"], day["event_hours"]) == (1.0, 24.0)


def test_no_seizures():
    m = scored(Recording(HOUR, [], [(100.0, 110.0)]))
    assert counts(m) == (0, 0, 1)
    # the sensitivity has no value: reported as 0.0 (events = 0 says why); precision 0 / 1 and F1 0 / (0 + 1 + 0) do
    assert (m["event_sensitivity"], m["event_precision"], m["event_f1"]) == (0.0, 0.0, 0.0)
    nan = scored(Recording(HOUR, [], [(100.0, 110.0)]), undefined=math.nan)
    assert math.isnan(nan["event_sensitivity"]) and (nan["event_precision"], nan["event_f1"]) == (0.0, 0.0)
    quiet = scored(Recording(HOUR, [], []), undefined=math.nan)  # nothing to find, nothing raised: F1 undefined too
    assert counts(quiet) == (0, 0, 0) and quiet["event_false_alarms_per_24h"] == 0.0
    assert all(math.isnan(quiet[f"event_{k}"]) for k in ("sensitivity", "precision", "f1"))


def test_no_alarms():
    m = scored(Recording(HOUR, [SEIZURE], []))
    assert counts(m) == (1, 0, 0)
    ratios = ("sensitivity", "precision", "f1", "false_alarms_per_24h")
    assert [m[f"event_{k}"] for k in ratios] == [0.0, 0.0, 0.0, 0.0]
    nan = scored(Recording(HOUR, [SEIZURE], []), undefined=math.nan)
    assert math.isnan(nan["event_precision"]) and nan["event_sensitivity"] == 0.0 and nan["event_f1"] == 0.0


def test_no_recordings_and_empty_recordings_score_nothing():
    assert counts(scored()) == (0, 0, 0) and scored()["event_false_alarms_per_24h"] == 0.0
    assert scored(Recording(0.0), Recording(HOUR, [SEIZURE], [SEIZURE]))["event_hours"] == 1.0


def test_mask_and_window_intervals():
    # 2 Hz: samples 1-2 are [0.5, 1.5) s, sample 4 [2.0, 2.5) s; a mask may start or end inside a run
    assert events.mask_intervals([0, 1, 1, 0, 1], 2.0) == [(0.5, 1.5), (2.0, 2.5)]
    assert events.mask_intervals(np.array([True, True, False]), 0.2) == [(0.0, 10.0)]
    assert events.mask_intervals([], 1.0) == []
    # windows every 5 s with alarms at 0, 5, 15 and 30 s, each covering 10 s: [0, 25) and [30, 40) (touching = one)
    starts = [0, 5, 10, 15, 20, 25, 30]
    assert events.window_intervals([1, 1, 0, 1, 0, 0, 1], starts, 10.0) == [(0.0, 25.0), (30.0, 40.0)]
    assert events.window_intervals([1, 1, 0, 1, 0, 0, 1], starts, 5.0) == [(0.0, 10.0), (15.0, 20.0), (30.0, 35.0)]
    assert events.window_intervals([0, 0], [0, 5], 5.0) == []
    for bad in ([0.7, 1], [1]):
        with pytest.raises(ValueError, match="must be 0/1, one per window"):
            events.window_intervals(bad, [0, 5], 5.0)
    with pytest.raises(ValueError, match="0/1"):
        events.mask_intervals([0, 2], 1.0)


def test_intervals_outside_the_recording_are_refused():
    with pytest.raises(ValueError, match=r"seizures interval \[3000, 4000\) s is not within \[0, 3600.0\] s"):
        Recording(HOUR, [(3000, 4000)])  # e.g. samples given for seconds
    with pytest.raises(ValueError, match="alarms interval"):
        Recording(HOUR, [], [(10.0, 10.0)])
    with pytest.raises(ValueError, match="duration_s"):
        Recording(-1.0)


# --- from a WindowDataset -------------------------------------------------------------------------------------------


@pytest.fixture
def dev_cache(tmp_path):
    """Metadata only (no recording is read), at 50 Hz: a 600 s recording with a seizure at [200, 260) s, a 300 s one
    without, and a 5 s one (shorter than a 10 s window) whose seizure at [0, 2) s no window can find."""
    return write_cache(
        tmp_path / "cache",
        {
            "dev/aaaaaaaa_s001_t000": (None, recording(30000, 0, [(10000, 13000)])[1]),
            "dev/aaaaaaab_s001_t000": (None, recording(15000, 1)[1]),
            "dev/aaaaaaac_s001_t000": (None, recording(250, 2, [(0, 100)])[1]),
        },
        write_files=False,
    )


def alarms_at(ds: WindowDataset, where: list[tuple[int, float]]) -> np.ndarray:
    """0/1 per window of ``ds``: 1 at the windows starting at (file number, start second)."""
    wanted = {(ds.files[k], round(s * RATE)) for k, s in where}
    return np.array([ds.window_location(i) in wanted for i in range(len(ds))])


def test_dataset_windows_grouped_by_recording_against_the_metadata_seizures(dev_cache):
    ds = WindowDataset(dev_cache, "dev", window_s=10.0, stride_s=5.0)
    assert len(ds) == 119 + 59  # windows start every 5 s while they fit: 0..590 s and 0..290 s; none in 5 s
    # found by windows at 195 and 200 s; two false alarms 150 s apart in the second recording
    alarms = alarms_at(ds, [(0, 195.0), (0, 200.0), (1, 100.0), (1, 250.0)])
    recordings = events.dataset_recordings(ds, alarms)
    assert [(r.duration_s, r.seizures, r.alarms) for r in recordings] == [
        (600.0, [(200.0, 260.0)], [(195.0, 205.0)]),  # each alarm covers its stride: [195, 200) + [200, 205)
        (300.0, [], [(100.0, 105.0), (250.0, 255.0)]),
        (5.0, [(0.0, 2.0)], []),
    ]
    m = events.dataset_event_metrics(ds, alarms)
    assert m == {
        "dev_events": 2,  # the short recording's seizure counts, missed
        "dev_event_true_positives": 1,
        "dev_event_false_alarms": 2,
        "dev_event_hours": round(905 / 3600, 6),
        "dev_event_sensitivity": 0.5,
        "dev_event_precision": round(1 / 3, 6),
        "dev_event_f1": 0.4,  # 2 / (2 + 2 + 1)
        "dev_event_false_alarms_per_24h": round(2 / 905 * 86400, 6),
    }
    assert events.dataset_event_metrics(ds, alarms.astype(np.uint8), "mine") == {
        k.replace("dev_", "mine_"): v for k, v in m.items()
    }


def test_dataset_cover_stride_or_window(dev_cache):
    ds = WindowDataset(dev_cache, "dev", window_s=10.0, stride_s=5.0)
    alarms = alarms_at(ds, [(0, 165.0)])  # the widened seizure starts at 170 s
    assert events.dataset_recordings(ds, alarms)[0].alarms == [(165.0, 170.0)]
    assert events.dataset_event_metrics(ds, alarms)["dev_event_true_positives"] == 0
    assert events.dataset_recordings(ds, alarms, cover="window")[0].alarms == [(165.0, 175.0)]
    assert events.dataset_event_metrics(ds, alarms, cover="window")["dev_event_true_positives"] == 1
    assert events.dataset_event_metrics(ds, alarms, tolerance_start_s=40.0)["dev_event_true_positives"] == 1
    with pytest.raises(ValueError, match="cover='centre'"):
        events.dataset_recordings(ds, alarms, cover="centre")


def test_dataset_alarms_must_be_one_0_or_1_per_window(dev_cache):
    ds = WindowDataset(dev_cache, "dev", window_s=10.0, stride_s=5.0)
    for bad in (np.zeros(len(ds) - 1), np.full(len(ds), 0.7)):  # one short; probabilities, not alarms
        with pytest.raises(ValueError, match=r"one per window of the dataset \(178\)"):
            events.dataset_event_metrics(ds, bad)
