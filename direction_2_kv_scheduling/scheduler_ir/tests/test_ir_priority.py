"""Priority policy: urgent first, aging bounds every wait, least urgent preempted first."""

from __future__ import annotations

from sim import SimRequest, Simulation
from views import BS, ids, run, wait

from sagellm.core.types import SchedulerState
from sagellm.scheduler_ir import CostModel, PriorityIRBuilder


def state(running: tuple = (), waiting: tuple = (), free: int = 100, now: float = 0.0) -> SchedulerState:
    return SchedulerState(running, waiting, num_free_blocks=free, block_size=BS, now=now)


def test_lower_priority_value_is_admitted_first() -> None:
    waits = (wait("low", arrival=0.0, priority=5), wait("high", arrival=1.0, priority=0), wait("mid", priority=2))
    plan = PriorityIRBuilder(max_num_seqs=2, aging_rate=0.0).build(state(waiting=waits))
    assert plan.admitted == ("high", "mid") and plan.policy == "priority"


def test_equal_priorities_go_by_arrival_then_snapshot_order() -> None:
    waits = (wait("b", arrival=2.0), wait("a", arrival=1.0), wait("c1", arrival=3.0), wait("c2", arrival=3.0))
    assert ids(PriorityIRBuilder().order(state(waiting=waits)).waiting) == ["a", "b", "c1", "c2"]


def test_aging_lets_an_old_request_overtake_a_new_urgent_one() -> None:
    # aging_rate 1/s: priority 10 arriving at t=0 ranks like priority 0 arriving at t=10
    old = wait("old", arrival=0.0, priority=10)
    builder = PriorityIRBuilder(aging_rate=1.0)
    assert ids(builder.order(state(waiting=(old, wait("new", arrival=9.0)))).waiting) == ["new", "old"]
    assert ids(builder.order(state(waiting=(old, wait("new", arrival=11.0)))).waiting) == ["old", "new"]


def test_order_does_not_depend_on_the_clock() -> None:
    waits = (wait("a", arrival=0.0, priority=3), wait("b", arrival=2.0, priority=0), wait("c", arrival=5.0))
    builder = PriorityIRBuilder(aging_rate=0.7)
    orders = {tuple(ids(builder.order(state(waiting=waits, now=t)).waiting)) for t in (5.0, 50.0, 5000.0)}
    assert len(orders) == 1


def test_running_served_by_urgency_and_least_urgent_preempted_first() -> None:
    # each sits at a block boundary: every decode needs a fresh block
    runs = tuple(run(f"r{p}", 9, computed=8, arrival=float(p), priority=p) for p in (3, 0, 2, 1))
    plan = PriorityIRBuilder(aging_rate=0.0).build(state(running=runs, free=1))
    assert plan.preempted == ("r3",)
    assert ids(plan.chunks) == ["r0", "r1", "r2"]


def test_a_high_priority_newcomer_does_not_skip_a_blocked_head() -> None:
    waits = (wait("big", prompt=40, priority=0), wait("small", prompt=4, arrival=1.0, priority=5))
    assert PriorityIRBuilder().build(state(waiting=waits, free=5)).admitted == ()


def starvation_run(aging_rate: float) -> float | None:
    """One priority-10 request at t=0, then an urgent request every step; room for one admission a step.

    Returns when the low-priority request got its first token (None: never, within the run).
    """
    cost = CostModel(step_overhead_s=0.1, flops_per_token=1.0, compute_flops_per_s=1e9)  # every step ~0.1 s
    builder = PriorityIRBuilder(max_num_seqs=1, max_num_batched_tokens=64, aging_rate=aging_rate)
    urgent = [SimRequest(f"u{i}", 0.1 * i, 4, 1, priority=0) for i in range(300)]
    sim = Simulation(builder, cost)
    done = sim.run([SimRequest("low", 0.0, 4, 1, priority=10), *urgent])
    low = next(s for s in done if s.request.request_id == "low")
    urgent_after = [s for s in done if s.request.request_id != "low" and s.token_times[0] > low.token_times[0]]
    return low.token_times[0] if urgent_after else None


def test_aging_bounds_the_wait_under_a_stream_of_urgent_requests() -> None:
    # bound: urgent requests arriving more than (10 - 0) / aging_rate = 5 s after it cannot overtake it
    served_at = starvation_run(aging_rate=2.0)
    assert served_at is not None and 5.0 <= served_at <= 5.5


def test_without_aging_the_stream_starves_the_low_priority_request() -> None:
    assert starvation_run(aging_rate=0.0) is None  # served only after all 300 urgent ones
