"""Randomized property tests: hundreds of seeded snapshots, every invariant checked.

hypothesis is not a dependency, so states come from ``random.Random(seed)``
with fixed seeds: failures reproduce exactly, and the seed is in the test id
(or, for the per-policy loops, in the assertion message).

The first half pins FIFO down exactly (its order, and plan-for-plan
equality with the naive reference). The second half runs every policy
variant through the same invariants: core's conformance checks, the
one-cut-chunk rule, block accounting at other block sizes, and that the plan
follows the policy's own :meth:`order` (served in order, victims from the
tail, newest-ranked first, admission of the head without skipping).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable

import pytest
from ir_states import Case, random_case, with_policy_fields

from sagellm.core.testing import IRBuilderConformance
from sagellm.core.types import ExecutionPlan, SchedulerState, SequenceView
from sagellm.scheduler_ir import (
    AdaptiveIRBuilder,
    BaseIRBuilder,
    CostModel,
    FIFOIRBuilder,
    NaiveFIFOIRBuilder,
    PrefixMatch,
    PriorityIRBuilder,
    SLOIRBuilder,
    describe_plan,
    rank_by_prefix,
)

SEEDS = range(600)
_suite = IRBuilderConformance()


def build(case: Case) -> ExecutionPlan:
    return FIFOIRBuilder(case.max_num_seqs, case.budget, case.chunked).build(case.state)


def arrival_rank(state: SchedulerState) -> dict[str, int]:
    """Position of each sequence in its queue's (stable) arrival order."""
    ranks: dict[str, int] = {}
    for queue in (state.running, state.waiting):
        for i, view in enumerate(sorted(queue, key=lambda v: v.arrival_time)):
            ranks[view.request_id] = i
    return ranks


def check_blocks(state: SchedulerState, plan: ExecutionPlan) -> None:
    """The conformance block check, for any block size (the suite's helper assumes 4)."""
    views = {v.request_id: v for v in state.running + state.waiting}
    freed = sum(views[r].num_blocks_held for r in plan.preempted)
    bs = state.block_size
    need = 0
    for c in plan.chunks:
        held = views[c.request_id].num_blocks_held or c.start // bs
        need += max(0, math.ceil((c.start + c.num_tokens) / bs) - held)
    assert need <= state.num_free_blocks + freed


def check_fifo(case: Case, plan: ExecutionPlan) -> None:
    state, rank = case.state, arrival_rank(case.state)
    running_ids = {v.request_id for v in state.running}
    served = [c.request_id for c in plan.chunks if c.request_id in running_ids]
    assert served == sorted(served, key=rank.__getitem__), "running not served oldest first"
    assert all(rank[p] > rank[s] for p in plan.preempted for s in served), "a victim is older than a served one"
    assert list(plan.preempted) == sorted(plan.preempted, key=rank.__getitem__, reverse=True), "not newest first"
    if plan.preempted:
        assert plan.admitted == (), "admitted after a preemption"
    head = [v.request_id for v in sorted(state.waiting, key=lambda v: v.arrival_time)][: len(plan.admitted)]
    assert list(plan.admitted) == head, "admission skipped the head of the queue"
    assert len(running_ids) - len(plan.preempted) + len(plan.admitted) <= max(case.max_num_seqs, len(running_ids))


def check_only_last_chunk_is_cut(case: Case, plan: ExecutionPlan) -> None:
    """Budget cuts at most one chunk, the last; every other chunk runs all its remaining tokens."""
    views = {v.request_id: v for v in case.state.running + case.state.waiting}
    for c in plan.chunks[:-1]:
        assert c.start + c.num_tokens == views[c.request_id].num_tokens
    if not case.chunked:
        assert all(c.start + c.num_tokens == views[c.request_id].num_tokens for c in plan.chunks)


@pytest.mark.parametrize("seed", SEEDS)
def test_random_states_keep_the_conformance_invariants(seed: int) -> None:
    case = random_case(seed)
    plan = build(case)
    _suite._check_invariants(case.state, plan, case.max_num_seqs, case.budget)
    check_fifo(case, plan)
    check_only_last_chunk_is_cut(case, plan)


@pytest.mark.parametrize("seed", SEEDS)
def test_random_states_match_the_naive_reference(seed: int) -> None:
    case = random_case(seed)
    fast = build(case)
    slow = NaiveFIFOIRBuilder(case.max_num_seqs, case.budget, case.chunked).build(case.state)
    assert (fast.chunks, fast.admitted, fast.preempted) == (slow.chunks, slow.admitted, slow.preempted), (
        describe_plan(fast) + "\n---\n" + describe_plan(slow)
    )


@pytest.mark.parametrize("block_size", [1, 3, 16])
def test_other_block_sizes_keep_block_and_fifo_invariants(block_size: int) -> None:
    for seed in range(200):
        case = random_case(10_000 + seed, block_size=block_size)
        plan = build(case)
        check_blocks(case.state, plan)
        check_fifo(case, plan)
        slow = NaiveFIFOIRBuilder(case.max_num_seqs, case.budget, case.chunked).build(case.state)
        assert (plan.chunks, plan.admitted, plan.preempted) == (slow.chunks, slow.admitted, slow.preempted)


def test_random_cases_exercise_every_branch() -> None:
    """Guard against a generator that stops producing interesting states."""
    plans = [(random_case(s), build(random_case(s))) for s in SEEDS]
    assert sum(bool(p.preempted) for _, p in plans) >= 30
    assert sum(bool(p.admitted) for _, p in plans) >= 100
    assert sum(bool(p.decode_batch) for _, p in plans) >= 100
    assert sum(any(not c.is_decode for c in p.chunks) and not c_.chunked for c_, p in plans) >= 30
    assert sum(p.num_batched_tokens == c.budget for c, p in plans) >= 30


# --- every policy ----------------------------------------------------------------------------------

#: A toy device whose swap/recompute crossover falls at ~20 tokens of context, so the small random
#: cases see both modes (the CPU defaults always swap; real GPU crossovers lie at thousands of tokens).
MIXED_COST = CostModel(
    kv_bytes_per_token=1e5,
    host_bandwidth_bytes_per_s=1e9,
    flops_per_token=1e8,
    attention_flops_coeff=1e7,
    compute_flops_per_s=1e12,
)
EAGER = {"queue_high": 3, "queue_low": 1, "kv_high": 0.5, "kv_low": 0.2}  # adaptive: loaded in many cases


class ThirdsProbe:
    """Groups requests by id modulo 3 (some groups of several), so the grouping path runs."""

    def match(self, view: SequenceView) -> PrefixMatch:
        group: Hashable = int(view.request_id[1:]) % 3 if view.num_cached_tokens else None
        return PrefixMatch(view.num_cached_tokens, group)


Factory = Callable[[Case], BaseIRBuilder]


def limits(case: Case) -> tuple[int, int, bool]:
    return (case.max_num_seqs, case.budget, case.chunked)


VARIANTS: dict[str, Factory] = {
    "fifo": lambda c: FIFOIRBuilder(*limits(c)),
    "fifo-prefix-window": lambda c: FIFOIRBuilder(*limits(c), prefix_window=4),
    "fifo-prefix-groups": lambda c: FIFOIRBuilder(*limits(c), prefix_window=5, prefix_probe=ThirdsProbe()),
    "fifo-swap": lambda c: FIFOIRBuilder(*limits(c), swap_available=True, cost=MIXED_COST),
    "priority": lambda c: PriorityIRBuilder(*limits(c), aging_rate=0.5),
    "priority-strict": lambda c: PriorityIRBuilder(*limits(c), aging_rate=0.0, prefix_window=3),
    "slo": lambda c: SLOIRBuilder(*limits(c), ttft_slo_ms=5000, tpot_slo_ms=300, max_wait_ms=12_000),
    "slo-tight": lambda c: SLOIRBuilder(*limits(c), ttft_slo_ms=1000, tpot_slo_ms=40, min_prefill_tokens=4),
    "slo-swap": lambda c: SLOIRBuilder(*limits(c), swap_available=True, cost=MIXED_COST),
    "adaptive": lambda c: AdaptiveIRBuilder(*limits(c)),
    "adaptive-slo": lambda c: AdaptiveIRBuilder(*limits(c), **EAGER, tpot_slo_ms=40),
    "adaptive-priority": lambda c: AdaptiveIRBuilder(*limits(c), **EAGER, loaded_policy="priority", prefix_window=4),
}


def policy_case(seed: int, block_size: int = 4) -> Case:
    return with_policy_fields(random_case(seed, block_size), seed)


def check_follows_order(make: Factory, case: Case, plan: ExecutionPlan) -> None:
    """The plan obeys the order a fresh, identical builder gives for the same snapshot."""
    builder = make(case)
    order = builder.order(case.state)
    rank = {v.request_id: i for i, v in enumerate(order.running)}
    assert sorted(rank) == sorted(v.request_id for v in case.state.running), "order lost or invented a sequence"
    served = [c.request_id for c in plan.chunks if c.request_id in rank]
    assert served == sorted(served, key=rank.__getitem__), "running not served in policy order"
    assert all(rank[p] > rank[s] for p in plan.preempted for s in served), "a victim ranks before a served one"
    assert list(plan.preempted) == sorted(plan.preempted, key=rank.__getitem__, reverse=True), "victims not from tail"
    if plan.preempted:
        assert plan.admitted == (), "admitted after a preemption"
    ranked = rank_by_prefix(order.waiting, builder.prefix_probe, builder.prefix_window)
    head = [v.request_id for v in ranked][: len(plan.admitted)]
    assert list(plan.admitted) == head, "admission skipped the head of the policy's queue"
    assert plan.policy == (order.policy or builder.name)


def check_everything(name: str, case: Case, seed: int) -> ExecutionPlan:
    make = VARIANTS[name]
    plan = make(case).build(case.state)
    try:
        check_blocks(case.state, plan)
        if case.state.block_size == 4:
            _suite._check_invariants(case.state, plan, case.max_num_seqs, case.budget)
        check_only_last_chunk_is_cut(case, plan)
        check_follows_order(make, case, plan)
    except AssertionError as exc:
        raise AssertionError(f"{name}, seed {seed}: {exc}\n{describe_plan(plan)}") from exc
    return plan


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_policy_keeps_the_invariants_on_random_states(name: str) -> None:
    plans = [(policy_case(seed), check_everything(name, policy_case(seed), seed)) for seed in SEEDS]
    assert sum(bool(p.preempted) for _, p in plans) >= 30, "too few preemptions to mean anything"
    assert sum(bool(p.admitted) for _, p in plans) >= 100, "too few admissions to mean anything"


@pytest.mark.parametrize("name", sorted(VARIANTS))
@pytest.mark.parametrize("block_size", [1, 3, 16])
def test_every_policy_keeps_the_invariants_at_other_block_sizes(name: str, block_size: int) -> None:
    for seed in range(150):
        check_everything(name, policy_case(20_000 + seed, block_size), seed)


def test_policy_variants_exercise_their_own_branches() -> None:
    """Guard: the random cases reach swap choices, token caps, prefix reordering and both adaptive modes."""
    cases = [policy_case(seed) for seed in SEEDS]

    def plans(name: str) -> list[ExecutionPlan]:
        return [VARIANTS[name](c).build(c.state) for c in cases]

    swapped = [p for p in plans("slo-swap") if p.preempted]
    assert sum(bool(p.swapped_out) for p in swapped) >= 10
    assert sum(len(p.swapped_out) < len(p.preempted) for p in swapped) >= 10  # both modes appear
    capped = [c for c in cases if VARIANTS["slo-tight"](c).order(c.state).max_tokens is not None]
    assert len(capped) >= 50
    modes = {p.policy for p in plans("adaptive-slo")}
    assert modes == {"adaptive:fifo", "adaptive:slo"}
    moved = 0
    for c in cases:
        fifo = FIFOIRBuilder(*limits(c)).order(c.state)
        ranked = list(rank_by_prefix(fifo.waiting, ThirdsProbe(), 5))
        moved += ranked != list(fifo.waiting)
    assert moved >= 100
