"""Conformance suite for :class:`sagellm.core.protocols.IRBuilder`.

Every check here is an invariant the engine relies on when it applies a
plan, whatever the policy: budgets hold, block needs fit, and a sequence is
never both preempted and scheduled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sagellm.core.protocols import IRBuilder, KVView
from sagellm.core.types import ArithmeticKVView, ExecutionPlan, SchedulerState, SequenceView

BS = 4


def waiting(rid: str, prompt: int, arrival: float = 0.0, cached: int = 0, priority: int = 0) -> SequenceView:
    return SequenceView(
        rid,
        num_tokens=prompt,
        num_computed_tokens=0,
        num_blocks_held=0,
        arrival_time=arrival,
        num_cached_tokens=cached,
        num_prompt_tokens=prompt,
        priority=priority,
        max_tokens=16,
    )


def running(rid: str, tokens: int, computed: int | None = None, arrival: float = 0.0) -> SequenceView:
    done = tokens - 1 if computed is None else computed
    return SequenceView(
        rid,
        num_tokens=tokens,
        num_computed_tokens=done,
        num_blocks_held=math.ceil(done / BS),
        arrival_time=arrival,
        num_prompt_tokens=min(tokens, 8),
        max_tokens=64,
    )


@dataclass(frozen=True, slots=True)
class PromotingKVView:
    """A view where admitting some waiting sequences costs extra blocks (promotions, swap-ins, pins)."""

    num_free_blocks: int
    extra: dict[str, int]
    block_size: int = BS

    def blocks_needed(self, seq: SequenceView, num_new_tokens: int) -> int:
        plain = ArithmeticKVView(self.block_size, self.num_free_blocks).blocks_needed(seq, num_new_tokens)
        return plain + self.extra.get(seq.request_id, 0)

    def blocks_freed(self, seq: SequenceView) -> int:
        return seq.num_blocks_held


class IRBuilderConformance:
    """Inherit and implement :meth:`make_builder`."""

    def make_builder(self, max_num_seqs: int, max_num_batched_tokens: int) -> IRBuilder:
        raise NotImplementedError

    def _build(
        self, state: SchedulerState, max_num_seqs: int = 8, budget: int = 64, kv: KVView | None = None
    ) -> ExecutionPlan:
        builder = self.make_builder(max_num_seqs, budget)
        assert isinstance(builder, IRBuilder)
        plan = builder.build(state) if kv is None else builder.build(state, kv)
        self._check_invariants(state, plan, max_num_seqs, budget, kv)
        return plan

    def _check_invariants(
        self, state: SchedulerState, plan: ExecutionPlan, max_num_seqs: int, budget: int, kv: KVView | None = None
    ) -> None:
        kv = kv or ArithmeticKVView(state.block_size, state.num_free_blocks)
        views = {v.request_id: v for v in state.running + state.waiting}
        running_ids = {v.request_id for v in state.running}
        waiting_ids = {v.request_id for v in state.waiting}
        scheduled = [c.request_id for c in plan.chunks]
        assert len(scheduled) == len(set(scheduled)), "a sequence appears twice in one plan"
        assert set(plan.preempted) <= running_ids, "only running sequences can be preempted"
        assert set(plan.swapped_out) <= set(plan.preempted), "only preempted sequences can be swapped out"
        assert set(plan.admitted) <= waiting_ids, "only waiting sequences can be admitted"
        assert not set(plan.preempted) & set(scheduled), "preempted and scheduled in one plan"
        assert set(scheduled) <= (running_ids - set(plan.preempted)) | set(plan.admitted)
        assert plan.num_batched_tokens <= budget, "token budget exceeded"
        assert len(scheduled) <= max_num_seqs, "sequence limit exceeded"
        freed = sum(kv.blocks_freed(views[r]) for r in plan.preempted)
        need = 0
        for chunk in plan.chunks:
            view = views[chunk.request_id]
            assert chunk.num_tokens >= 1
            expected_start = view.num_computed_tokens if chunk.request_id in running_ids else view.num_cached_tokens
            assert chunk.start == expected_start, f"{chunk.request_id} starts at {chunk.start}"
            assert chunk.start + chunk.num_tokens <= view.num_tokens, "scheduled past the known tokens"
            assert chunk.is_decode == (
                chunk.request_id in running_ids
                and view.num_uncomputed_tokens == 1
                and view.num_tokens > view.num_prompt_tokens
            )
            need += kv.blocks_needed(view, chunk.num_tokens)
        assert need <= kv.num_free_blocks + freed, f"needs {need} blocks, only {kv.num_free_blocks + freed}"

    def test_empty_state_gives_empty_plan(self) -> None:
        plan = self._build(SchedulerState((), (), num_free_blocks=10, block_size=BS))
        assert plan.is_empty and plan.num_batched_tokens == 0

    def test_waiting_request_is_admitted_and_prefilled(self) -> None:
        plan = self._build(SchedulerState((), (waiting("a", 10),), num_free_blocks=10, block_size=BS))
        assert plan.admitted == ("a",)
        assert [(c.request_id, c.start, c.num_tokens) for c in plan.chunks] == [("a", 0, 10)]

    def test_prefix_hit_skips_cached_tokens(self) -> None:
        plan = self._build(SchedulerState((), (waiting("a", 10, cached=8),), num_free_blocks=10, block_size=BS))
        assert [(c.start, c.num_tokens) for c in plan.chunks] == [(8, 2)]

    def test_running_decodes_are_scheduled(self) -> None:
        state = SchedulerState((running("a", 12), running("b", 9)), (), num_free_blocks=10, block_size=BS)
        plan = self._build(state)
        assert {c.request_id for c in plan.decode_batch} == {"a", "b"}
        assert all(c.num_tokens == 1 for c in plan.chunks)

    def test_token_budget_chunks_a_long_prompt(self) -> None:
        plan = self._build(SchedulerState((), (waiting("a", 200),), num_free_blocks=100, block_size=BS), budget=64)
        assert [(c.start, c.num_tokens) for c in plan.chunks] == [(0, 64)]

    def test_partially_prefilled_sequence_continues(self) -> None:
        state = SchedulerState((running("a", 200, computed=64),), (), num_free_blocks=100, block_size=BS)
        plan = self._build(state, budget=64)
        assert [(c.start, c.num_tokens, c.is_decode) for c in plan.chunks] == [(64, 64, False)]

    def test_sequence_limit_holds(self) -> None:
        waits = tuple(waiting(f"w{i}", 4, arrival=float(i)) for i in range(10))
        plan = self._build(SchedulerState((), waits, num_free_blocks=100, block_size=BS), max_num_seqs=3)
        assert len(plan.chunks) == 3

    def test_no_admission_without_blocks(self) -> None:
        plan = self._build(SchedulerState((), (waiting("a", 10),), num_free_blocks=1, block_size=BS))
        assert plan.admitted == () and plan.chunks == ()

    def test_preempts_when_decodes_do_not_fit(self) -> None:
        # each sequence sits at a block boundary, so every decode needs a fresh block
        runs = tuple(running(f"r{i}", 9, computed=8, arrival=float(i)) for i in range(4))
        plan = self._build(SchedulerState(runs, (), num_free_blocks=1, block_size=BS))
        assert plan.preempted, "out of blocks: someone must be preempted"
        assert len(plan.decode_batch) >= 1

    def test_waiting_requests_served_when_room(self) -> None:
        state = SchedulerState((running("r", 9),), (waiting("w", 6, arrival=1.0),), num_free_blocks=10, block_size=BS)
        plan = self._build(state)
        assert {c.request_id for c in plan.chunks} == {"r", "w"}

    def test_admission_pays_what_the_kv_view_charges(self) -> None:
        """The engine's view, not arithmetic, prices a chunk: a plan never asks the pool for more."""
        waits = tuple(waiting(f"w{i}", 4, arrival=float(i)) for i in range(3))
        state = SchedulerState((), waits, num_free_blocks=4, block_size=BS)
        assert len(self._build(state).admitted) == 3  # one block each by arithmetic
        plan = self._build(state, kv=PromotingKVView(4, {"w0": 2, "w1": 2, "w2": 2}))
        assert len(plan.admitted) == 1, "each admission costs 3 blocks in this view: only one fits in 4"

    def test_a_plan_uses_the_views_free_blocks(self) -> None:
        state = SchedulerState((), (waiting("a", 10),), num_free_blocks=100, block_size=BS)
        assert self._build(state, kv=PromotingKVView(1, {})).admitted == ()
