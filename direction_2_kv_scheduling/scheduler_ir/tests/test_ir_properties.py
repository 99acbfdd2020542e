"""Randomized property tests: hundreds of seeded snapshots, every invariant checked.

hypothesis is not a dependency, so states come from ``random.Random(seed)``
with fixed seeds: failures reproduce exactly, and the seed is in the test id.
"""

from __future__ import annotations

import math

import pytest
from ir_states import Case, random_case

from sagellm.core.testing import IRBuilderConformance
from sagellm.core.types import ExecutionPlan, SchedulerState
from sagellm.scheduler_ir import FIFOIRBuilder, NaiveFIFOIRBuilder, describe_plan

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
