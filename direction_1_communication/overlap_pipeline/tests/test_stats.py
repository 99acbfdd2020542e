"""The overlap arithmetic an engine reports."""

from __future__ import annotations

import threading

import pytest

from sagellm.overlap_pipeline import KindStats, OverlapStats, idle_share, overlap_efficiency


@pytest.mark.parametrize(
    "t_comp, t_comm, t_both, expected",
    [
        (2.0, 1.0, 2.0, 1.0),  # comm fully hidden under compute
        (1.0, 2.0, 2.0, 1.0),  # compute fully hidden under comm
        (2.0, 1.0, 3.0, 0.0),  # back to back: nothing hidden
        (2.0, 1.0, 2.3, 0.7),  # 70 % of the shorter side hidden
        (2.0, 1.0, 3.5, -0.5),  # the hand-off cost more than it hid
    ],
)
def test_overlap_efficiency(t_comp: float, t_comm: float, t_both: float, expected: float) -> None:
    assert overlap_efficiency(t_comp, t_comm, t_both) == pytest.approx(expected)


def test_efficiency_is_undefined_without_one_side() -> None:
    assert overlap_efficiency(0.0, 1.0, 1.0) is None
    assert overlap_efficiency(1.0, 0.0, 1.0) is None


@pytest.mark.parametrize(
    "t_comp, t_both, expected",
    [(1.0, 1.0, 0.0), (1.0, 1.25, 0.2), (1.0, 2.0, 0.5), (1.2, 1.0, 0.0)],
)
def test_idle_share(t_comp: float, t_both: float, expected: float) -> None:
    assert idle_share(t_comp, t_both) == pytest.approx(expected)
    assert idle_share(1.0, 0.0) is None


def test_kind_stats_sum_calls_before_dividing() -> None:
    stats = KindStats().plus(1.0, 1.0, 1.0).plus(3.0, 1.0, 4.0)  # E 1.0, then 0.0
    assert (stats.calls, stats.t_comp_s, stats.t_comm_s, stats.t_both_s) == (2, 4.0, 2.0, 5.0)
    assert stats.efficiency == pytest.approx(0.5)  # (4 + 2 - 5) / 2, weighted by time, not by call
    assert stats.idle_share == pytest.approx(0.2)
    assert stats.to_dict()["efficiency"] == pytest.approx(0.5)


def test_overlap_stats_record_from_many_threads() -> None:
    stats = OverlapStats()

    def record() -> None:
        for _ in range(1000):
            stats.record("k", 0.001, 0.002, 0.002)

    threads = [threading.Thread(target=record) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    got = stats.snapshot()["k"]
    assert got.calls == 4000
    assert got.t_comm_s == pytest.approx(8.0)
    assert stats.to_dict()["k"]["calls"] == 4000
    stats.reset()
    assert stats.snapshot() == {}
