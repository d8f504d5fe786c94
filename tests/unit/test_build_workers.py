"""``build.workers``: capped by the CPUs this process may use (a container's cgroup quota included) and by the
recordings to build; a request above the CPUs is capped with a warning, never run as more processes than CPUs."""

import logging
import os

import pytest

from eegcache.builder.run import available_cpus, worker_count

CPUS = len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [
        ("max 100000\n", CPUS),
        ("100000 100000\n", 1),
        ("50000 100000\n", 1),
        ("150000 100000\n", min(2, CPUS)),
        ("800000 100000\n", min(8, CPUS)),
        ("garbage\n", CPUS),
        (None, CPUS),
    ],
)
def test_available_cpus_are_the_affinity_mask_lowered_by_a_cgroup_quota(tmp_path, cpu_max, expected):
    path = tmp_path / "cpu.max"
    if cpu_max is not None:
        path.write_text(cpu_max)
    assert available_cpus(path) == expected


def test_workers_are_capped_by_the_recordings_and_the_cpus(caplog):
    cpus = available_cpus()
    with caplog.at_level(logging.WARNING, logger="eegcache.builder.run"):
        assert worker_count(0, 1000) == cpus
        assert worker_count(0, 1) == 1
        assert worker_count(1, 1000) == 1
        assert caplog.records == []
        assert worker_count(cpus + 7, 1000) == cpus
    assert [r.getMessage() for r in caplog.records] == [
        f"build.workers={cpus + 7} but {cpus} CPUs are available: running {cpus} worker processes"
    ]
