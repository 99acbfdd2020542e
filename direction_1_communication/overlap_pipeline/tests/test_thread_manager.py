"""What the thread manager promises beyond the protocol: no thread per call, FIFO, stats."""

from __future__ import annotations

import gc
import threading
import time

import pytest

from sagellm.overlap_pipeline import ThreadOverlapManager


@pytest.fixture
def manager() -> ThreadOverlapManager:
    made = ThreadOverlapManager(cuda_streams="off")
    yield made
    made.close()


def test_no_thread_is_created_per_call(manager: ThreadOverlapManager) -> None:
    manager.schedule(lambda: 0, lambda: 0)
    before = {t.ident for t in threading.enumerate()}
    seen: set[int | None] = set()
    for _ in range(50):
        manager.schedule(lambda: 0, lambda: seen.add(threading.get_ident()))
        manager.start(lambda: seen.add(threading.get_ident())).wait(5)
    assert {t.ident for t in threading.enumerate()} == before
    assert len(seen) == 1 and threading.get_ident() not in seen  # one worker, never the caller


def test_compute_runs_on_the_callers_thread(manager: ThreadOverlapManager) -> None:
    where, _ = manager.schedule(threading.get_ident, lambda: None)
    assert where == threading.get_ident()


def test_one_worker_runs_started_work_in_order(manager: ThreadOverlapManager) -> None:
    order: list[int] = []
    pendings = [manager.start(lambda i=i: (time.sleep(0.001 * (i % 3)), order.append(i))) for i in range(30)]
    for pending in pendings:
        pending.wait(5)
    assert order == list(range(30))


def test_both_failing_raises_compute_with_comm_as_context(manager: ThreadOverlapManager) -> None:
    def compute() -> None:
        raise KeyError("compute")

    def comm() -> None:
        raise OSError("comm")

    with pytest.raises(KeyError) as info:
        manager.schedule(compute, comm)
    assert isinstance(info.value.__context__, OSError)


def test_schedule_records_stats_per_kind(manager: ThreadOverlapManager) -> None:
    for _ in range(3):
        manager.schedule(lambda: time.sleep(0.05), lambda: time.sleep(0.05), kind="prefetch")
    manager.schedule(lambda: None, lambda: None)
    stats = manager.stats.snapshot()
    assert set(stats) == {"prefetch", "schedule"}
    prefetch = stats["prefetch"]
    assert prefetch.calls == 3
    assert prefetch.t_comp_s >= 0.15 and prefetch.t_comm_s >= 0.15
    assert prefetch.t_both_s < prefetch.t_comp_s + prefetch.t_comm_s
    assert prefetch.efficiency is not None and prefetch.efficiency > 0.5


def test_start_stats_count_the_callers_work_until_wait(manager: ThreadOverlapManager) -> None:
    pending = manager.start(lambda: time.sleep(0.1), kind="all_reduce")
    time.sleep(0.05)  # the caller computes for 50 ms, then waits the remaining ~50 ms
    pending.wait(5)
    pending.wait(5)  # a second wait records nothing more
    stats = manager.stats.snapshot()["all_reduce"]
    assert stats.calls == 1
    assert 0.04 <= stats.t_comp_s < 0.09
    assert stats.t_comm_s >= 0.09 and 0.09 <= stats.t_both_s < 0.2
    assert stats.idle_share is not None and 0.2 < stats.idle_share < 0.7


def test_a_manager_dropped_without_close_stops_its_threads() -> None:
    before_threads = set(threading.enumerate())
    manager = ThreadOverlapManager(num_workers=2, cuda_streams="off")
    manager.schedule(lambda: 0, lambda: 0)
    workers = [t for t in threading.enumerate() if t not in before_threads]
    assert len(workers) == 2
    del manager
    gc.collect()
    for worker in workers:
        worker.join(5)
        assert not worker.is_alive()


def test_close_from_inside_a_job_does_not_deadlock() -> None:
    manager = ThreadOverlapManager(cuda_streams="off")
    pending = manager.start(manager.close)
    assert pending.wait(5) is None
    manager.close()
