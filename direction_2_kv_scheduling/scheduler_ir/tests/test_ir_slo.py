"""SLO-aware policy: slack ordering, tiers, decodes first, TPOT-bounded steps, and behaviour under load."""

from __future__ import annotations

from dataclasses import replace

from sim import SimRequest, Simulation
from views import BS, ids, run, wait

from sagellm.core.types import SchedulerState
from sagellm.scheduler_ir import CostModel, FIFOIRBuilder, SLOIRBuilder

#: 1 ms per token, 10 ms per step: easy arithmetic.
COST = CostModel(flops_per_token=1e6, compute_flops_per_s=1e9, step_overhead_s=0.01)


def state(running: tuple = (), waiting: tuple = (), now: float = 0.0, free: int = 1000) -> SchedulerState:
    return SchedulerState(running, waiting, num_free_blocks=free, block_size=BS, now=now)


def slo(**options: object) -> SLOIRBuilder:
    defaults: dict[str, object] = {"ttft_slo_ms": 1000, "tpot_slo_ms": 100, "cost": COST}
    return SLOIRBuilder(16, 64, **(defaults | options))  # type: ignore[arg-type]


# --- order -----------------------------------------------------------------------------------------


def test_least_ttft_slack_first() -> None:
    # same deadline budget, earlier arrival = less slack; a longer prompt needs more time = less slack
    waits = (wait("late", 4, arrival=0.5), wait("early", 4, arrival=0.2), wait("long", 60, arrival=0.4))
    assert ids(slo().order(state(waiting=waits, now=0.5)).waiting) == ["early", "long", "late"]


def test_a_prefix_hit_adds_slack() -> None:
    waits = (wait("cold", 60, arrival=0.0), wait("warm", 60, arrival=0.0, cached=56))
    assert ids(slo().order(state(waiting=waits, now=0.1)).waiting) == ["cold", "warm"]


def test_requests_that_will_miss_go_after_those_that_can_make_it() -> None:
    # at now=1.5 with TTFT 1 s, "doomed" (arrived at 0) cannot make it; the others can
    waits = (wait("doomed", arrival=0.0), wait("b", arrival=1.2), wait("a", arrival=1.1))
    assert ids(slo().order(state(waiting=waits, now=1.5)).waiting) == ["a", "b", "doomed"]


def test_work_ranked_ahead_counts_against_feasibility() -> None:
    # 64-token steps of 74 ms: "first" needs 2 steps; "second", though feasible alone, is not behind it
    waits = (wait("first", 100, arrival=0.0), wait("second", 40, arrival=0.0), wait("third", 4, arrival=0.1))
    order = ids(slo(ttft_slo_ms=200).order(state(waiting=waits, now=0.0)).waiting)
    assert order == ["first", "third", "second"]


def test_starving_requests_go_first_in_arrival_order() -> None:
    waits = (wait("fresh", arrival=9.9), wait("old2", arrival=1.0), wait("old1", arrival=0.5))
    order = slo(max_wait_ms=5000).order(state(waiting=waits, now=10.0))
    assert ids(order.waiting) == ["old1", "old2", "fresh"]


def test_default_max_wait_is_ten_ttfts() -> None:
    assert slo(ttft_slo_ms=300).targets.max_wait_s == 3.0


def test_decodes_first_soonest_due_first_then_prefills() -> None:
    runs = (
        run("prefill", 40, computed=8, arrival=0.0, prompt=40),
        run("d-relaxed", last=0.95),
        run("d-urgent", last=0.91),
    )
    order = slo().order(state(running=runs, now=1.0))
    assert ids(order.running) == ["d-urgent", "d-relaxed", "prefill"]


def test_a_preempted_sequence_with_output_is_due_by_tpot_not_ttft() -> None:
    back = replace(wait("back", 20, arrival=0.0), num_prompt_tokens=12)  # 8 tokens of output, KV dropped
    fresh = wait("fresh", 4, arrival=0.0)
    # both arrived at 0; "back" has output, so its next token is due within TPOT (0.1 s), fresh within TTFT (1 s)
    assert ids(slo().order(state(waiting=(fresh, back), now=0.0)).waiting) == ["back", "fresh"]


# --- step size -------------------------------------------------------------------------------------


def test_prefill_is_bounded_when_a_decode_is_near_its_tpot_deadline() -> None:
    # the decode's token is due at 0.1 + 0.05 = 0.15: 40 ms left = 30 tokens at 1 ms after the 10 ms overhead
    plan = slo().build(state(running=(run("d", last=0.05),), waiting=(wait("p", 200),), now=0.11))
    assert plan.num_batched_tokens == 30
    assert [(c.request_id, c.num_tokens) for c in plan.chunks] == [("d", 1), ("p", 29)]


def test_without_timestamps_a_decode_is_due_one_tpot_from_now() -> None:
    plan = slo(tpot_slo_ms=50).build(state(running=(run("d"),), waiting=(wait("p", 200),), now=3.0))
    assert plan.num_batched_tokens == 40  # (50 - 10) ms / 1 ms


def test_no_bound_when_the_full_budget_fits_or_nothing_decodes() -> None:
    assert slo(tpot_slo_ms=500).order(state(running=(run("d"),), now=1.0)).max_tokens is None
    assert slo(tpot_slo_ms=1).order(state(waiting=(wait("p", 200),), now=1.0)).max_tokens is None


def test_prefill_keeps_a_floor_when_decodes_alone_fill_the_slack() -> None:
    runs = tuple(run(f"d{i}", arrival=float(i)) for i in range(10))
    plan = slo(tpot_slo_ms=12, min_prefill_tokens=5).build(state(running=runs, waiting=(wait("p", 200),)))
    assert plan.num_batched_tokens == 15 and plan.admitted == ("p",)


# --- behaviour under load (simulated clock) --------------------------------------------------------

CPU = CostModel()  # the package defaults: ~1.1 ms per prefill token, 20 ms per step


def ttft_attainment(builder: object, requests: list[SimRequest], ttft: float) -> float:
    done = Simulation(builder, CPU).run(requests)  # type: ignore[arg-type]
    return sum(s.ttft is not None and s.ttft <= ttft for s in done) / len(done)


def test_under_overload_slo_meets_more_ttft_deadlines_than_fifo() -> None:
    # 200-token prompts every 150 ms: ~1.6x what the modelled CPU can prefill
    requests = [SimRequest(f"q{i}", 0.15 * i, 200, 8) for i in range(60)]
    fifo = ttft_attainment(FIFOIRBuilder(), requests, 2.0)
    slo_ = ttft_attainment(SLOIRBuilder(ttft_slo_ms=2000, tpot_slo_ms=200), requests, 2.0)
    assert fifo < 0.4 and slo_ > 0.65


def test_under_light_load_slo_and_fifo_both_meet_every_deadline() -> None:
    requests = [SimRequest(f"q{i}", 1.0 * i, 200, 8) for i in range(10)]
    assert ttft_attainment(FIFOIRBuilder(), requests, 2.0) == 1.0
    assert ttft_attainment(SLOIRBuilder(ttft_slo_ms=2000), requests, 2.0) == 1.0


def test_long_prompts_do_not_push_decodes_past_their_tpot() -> None:
    decoders = [SimRequest(f"d{i}", 0.0, 16, 60) for i in range(4)]
    prompts = [SimRequest(f"p{i}", 1.0 + 0.5 * i, 1500, 2) for i in range(4)]

    def worst_gap(builder: object) -> float:
        done = Simulation(builder, CPU).run(decoders + prompts)  # type: ignore[arg-type]
        return max(s.max_gap for s in done if s.request.request_id.startswith("d"))

    assert worst_gap(FIFOIRBuilder()) > 0.5  # a 512-token prefill step stalls every decode
    assert worst_gap(SLOIRBuilder(tpot_slo_ms=200)) <= 0.2
