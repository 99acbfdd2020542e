"""FIFO-specific behaviour: order, preemption, admission, chunking."""

from __future__ import annotations

import math

import pytest

from sagellm.core.errors import ConfigError
from sagellm.core.types import ArithmeticKVView, ExecutionPlan, SchedulerState, SequenceView
from sagellm.scheduler_ir import FIFOIRBuilder, InvalidSchedulerStateError

BS = 4


def run(rid: str, tokens: int, computed: int | None = None, arrival: float = 0.0, prompt: int = 8) -> SequenceView:
    done = tokens - 1 if computed is None else computed
    return SequenceView(rid, tokens, done, math.ceil(done / BS), arrival_time=arrival, num_prompt_tokens=prompt)


def wait(rid: str, prompt: int, arrival: float = 0.0, cached: int = 0) -> SequenceView:
    return SequenceView(rid, prompt, 0, 0, arrival_time=arrival, num_cached_tokens=cached, num_prompt_tokens=prompt)


def build(
    running: tuple[SequenceView, ...] = (),
    waiting: tuple[SequenceView, ...] = (),
    free: int = 100,
    seqs: int = 8,
    budget: int = 64,
    chunked: bool = True,
) -> ExecutionPlan:
    builder = FIFOIRBuilder(seqs, budget, enable_chunked_prefill=chunked)
    return builder.build(SchedulerState(running, waiting, num_free_blocks=free, block_size=BS))


def triples(plan: ExecutionPlan) -> list[tuple[str, int, int]]:
    return [(c.request_id, c.start, c.num_tokens) for c in plan.chunks]


# --- order -----------------------------------------------------------------------------------------


def test_running_served_oldest_first_whatever_the_snapshot_order() -> None:
    runs = (run("new", 9, arrival=3.0), run("old", 9, arrival=1.0), run("mid", 9, arrival=2.0))
    assert [c.request_id for c in build(runs).chunks] == ["old", "mid", "new"]


def test_token_budget_cuts_the_newest_running_prefill() -> None:
    runs = (run("b", 40, computed=0, arrival=2.0), run("a", 40, computed=0, arrival=1.0))
    assert triples(build(runs, budget=50)) == [("a", 0, 40), ("b", 0, 10)]


def test_waiting_admitted_in_arrival_order() -> None:
    waits = (wait("w2", 4, arrival=2.0), wait("w0", 4, arrival=0.0), wait("w1", 4, arrival=1.0))
    assert build(waiting=waits).admitted == ("w0", "w1", "w2")


def test_arrival_ties_keep_snapshot_order() -> None:
    waits = tuple(wait(f"w{i}", 4, arrival=5.0) for i in range(3))
    assert build(waiting=waits, seqs=2).admitted == ("w0", "w1")


def test_running_before_waiting() -> None:
    plan = build((run("r", 30, computed=0, arrival=9.0),), (wait("w", 30, arrival=0.0),), budget=40)
    assert triples(plan) == [("r", 0, 30), ("w", 0, 10)]


def test_admission_pays_what_the_kv_view_charges() -> None:
    """The engine's view may charge a waiting sequence more than arithmetic (promotions, swap-ins, pins)."""

    class Promoting(ArithmeticKVView):
        def blocks_needed(self, seq: SequenceView, num_new_tokens: int) -> int:
            extra = 3 if seq.request_id == "w1" else 0
            return super().blocks_needed(seq, num_new_tokens) + extra

    waits = (wait("w0", 4), wait("w1", 4), wait("w2", 4))
    state = SchedulerState((), waits, num_free_blocks=4, block_size=BS)
    assert FIFOIRBuilder().build(state).admitted == ("w0", "w1", "w2")  # 1 block each by arithmetic
    plan = FIFOIRBuilder().build(state, Promoting(BS, 4))
    assert plan.admitted == ("w0",)  # w1 costs 4 with its promotions: it waits, and FIFO stops there


# --- preemption ------------------------------------------------------------------------------------


def at_boundary(rid: str, arrival: float) -> SequenceView:
    """8 tokens computed in 2 full blocks; the 9th needs a third block."""
    return run(rid, 9, computed=8, arrival=arrival)


def test_preempts_newest_first() -> None:
    runs = tuple(at_boundary(f"r{i}", float(i)) for i in range(4))
    plan = build(runs, free=1)
    # r0 takes the free block; r1 needs one -> r3 (newest) goes, freeing 2; r1 and r2 each take one
    assert plan.preempted == ("r3",)
    assert [c.request_id for c in plan.chunks] == ["r0", "r1", "r2"]


def test_preempts_several_newest_until_it_fits() -> None:
    runs = (run("big", 41, computed=0, arrival=0.0, prompt=41),) + tuple(
        at_boundary(f"r{i}", float(i + 1)) for i in range(3)
    )
    plan = build(runs, free=8, budget=64)  # big needs 11 blocks: 8 + two victims of 2; r0 takes the last
    assert plan.preempted == ("r2", "r1")
    assert triples(plan) == [("big", 0, 41), ("r0", 8, 1)]


def test_sequence_preempts_itself_when_it_is_the_newest_left() -> None:
    runs = (at_boundary("r0", 0.0), at_boundary("r1", 1.0))
    plan = build(runs, free=1)
    assert [c.request_id for c in plan.chunks] == ["r0"]
    assert plan.preempted == ("r1",)


def test_already_scheduled_sequences_are_never_victims() -> None:
    runs = (at_boundary("r0", 0.0), run("r1", 30, computed=8, arrival=1.0))
    plan = build(runs, free=1)  # r1 needs 6 blocks; only r1 itself is left to preempt
    assert plan.preempted == ("r1",) and [c.request_id for c in plan.chunks] == ["r0"]


def test_no_admission_after_a_preemption() -> None:
    runs = tuple(at_boundary(f"r{i}", float(i)) for i in range(3))
    # the victim's 2 blocks would be enough for the small waiting request, but it must not be admitted
    plan = build(runs, (wait("w", 2, arrival=9.0),), free=1)
    assert plan.preempted and plan.admitted == ()


def test_sequences_with_nothing_to_compute_keep_their_blocks() -> None:
    idle = run("idle", 9, computed=9, arrival=0.0)
    plan = build((idle, run("r", 9, arrival=1.0)), free=10)
    assert [c.request_id for c in plan.chunks] == ["r"] and plan.preempted == ()


# --- admission -------------------------------------------------------------------------------------


def test_no_head_of_line_skipping_on_blocks() -> None:
    waits = (wait("big", 40, arrival=0.0), wait("small", 4, arrival=1.0))
    plan = build(waiting=waits, free=5)  # big needs 10 blocks; small (1 block) must not jump the queue
    assert plan.admitted == ()


def test_max_num_seqs_bounds_the_running_set() -> None:
    runs = (run("r0", 9, computed=9), run("r1", 9, arrival=1.0))  # r0 idle but still holds a slot
    plan = build(runs, tuple(wait(f"w{i}", 4, arrival=float(i)) for i in range(3)), seqs=3)
    assert plan.admitted == ("w0",)


def test_prefix_hit_blocks_count_the_partial_cached_block() -> None:
    # cached 6 = 1 full block + 2 tokens of a partial one: ceil((6+4)/4) - 6//4 = 2 blocks
    view = wait("w", 10, cached=6)
    assert build(waiting=(view,), free=1).admitted == ()
    assert triples(build(waiting=(view,), free=2)) == [("w", 6, 4)]


def test_full_cache_hit_is_a_caller_bug() -> None:
    with pytest.raises(InvalidSchedulerStateError, match="at least one token"):
        build(waiting=(wait("w", 8, cached=8),))


def test_admitted_sequence_is_prefill_even_with_one_token_left() -> None:
    view = SequenceView("w", 12, 0, 0, num_cached_tokens=11, num_prompt_tokens=8)  # preempted, back in line
    (chunk,) = build(waiting=(view,)).chunks
    assert (chunk.start, chunk.num_tokens, chunk.is_decode) == (11, 1, False)


def test_last_prompt_token_is_not_a_decode() -> None:
    (chunk,) = build((run("r", 8, computed=7, prompt=8),)).chunks
    assert chunk.num_tokens == 1 and not chunk.is_decode


# --- chunked prefill off ---------------------------------------------------------------------------


def test_without_chunking_a_long_running_prefill_waits_and_decodes_behind_it_run() -> None:
    runs = (run("long", 100, computed=20, arrival=0.0, prompt=100), run("d", 9, arrival=1.0))
    plan = build(runs, budget=64, chunked=False)
    assert triples(plan) == [("d", 8, 1)]


def test_without_chunking_a_prompt_runs_whole_or_blocks_the_queue() -> None:
    waits = (wait("a", 40, arrival=0.0), wait("b", 40, arrival=1.0), wait("c", 4, arrival=2.0))
    off = build(waiting=waits, budget=64, chunked=False)
    assert triples(off) == [("a", 0, 40)]  # b (40 > 24 left) waits, and c may not skip it
    on = build(waiting=waits, budget=64, chunked=True)
    assert triples(on) == [("a", 0, 40), ("b", 0, 24)]


# --- configuration ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("seqs", "tokens"), [(0, 512), (64, 0)])
def test_invalid_limits_raise_config_error(seqs: int, tokens: int) -> None:
    with pytest.raises(ConfigError):
        FIFOIRBuilder(max_num_seqs=seqs, max_num_batched_tokens=tokens)


def test_invalid_block_size_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="block_size"):
        FIFOIRBuilder().build(SchedulerState((), (), num_free_blocks=1, block_size=0))
