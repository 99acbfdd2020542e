"""The engine's KV view prices a plan exactly: what it says an admission or a preemption costs is what the pool sees.

Model-free, on the tiny tiered pool of ``test_kv_tiers``: each case builds
a cache state, asks the view, applies the admission (or preemption) the way
the engine does, and compares the change in free-plus-evictable blocks.
"""

from __future__ import annotations

from test_kv_tiers import PROMPT_A, PROMPT_B, compute, make_kv, new_seq, start

from sagellm.core.protocols import KVView
from sagellm.core.types import SequenceState, SequenceView
from sagellm.engines.runtime.kv_manager import KVManager
from sagellm.engines.runtime.kv_view import StepKVView


def admitted_cost(kv: KVManager, seq: SequenceState, num_new_tokens: int) -> tuple[int, int]:
    """(what the view says, what admission plus the first chunk's allocation really took)."""
    view = StepKVView(kv, {seq.request_id: seq}, {})
    assert isinstance(view, KVView)
    priced = view.blocks_needed(SequenceView(seq.request_id, seq.num_tokens, 0, 0), num_new_tokens)
    before = kv.num_free_blocks
    assert kv.admit(seq, num_new_tokens) is not None
    kv.allocate_for(seq, seq.num_computed_tokens + min(num_new_tokens, seq.num_tokens - seq.num_computed_tokens))
    return priced, before - kv.num_free_blocks


def test_a_cold_admission_costs_its_chunk() -> None:
    kv = make_kv()
    assert admitted_cost(kv, new_seq("a", PROMPT_A), 13) == (4, 4)


def test_pinning_evictable_hit_blocks_is_priced() -> None:
    kv = make_kv()
    a = new_seq("a", PROMPT_A)
    start(kv, a, 13)
    kv.release(a)  # three cached blocks, evictable: counted free until a hit pins them
    assert admitted_cost(kv, new_seq("a2", PROMPT_A), 1) == (4, 4)  # 3 pinned + the 13th token's block


def test_a_hit_on_blocks_another_sequence_uses_is_free() -> None:
    kv = make_kv()
    start(kv, new_seq("a", PROMPT_A), 13)  # still running: its cached blocks are in use
    assert admitted_cost(kv, new_seq("a2", PROMPT_A), 1) == (1, 1)


def test_promoting_lower_tier_hit_blocks_is_priced() -> None:
    kv = make_kv(host=4)
    a = new_seq("a", PROMPT_A)
    start(kv, a, 13)
    kv.release(a)
    b = new_seq("b", PROMPT_B)
    start(kv, b, 29)  # the whole device: a's cached blocks are demoted to the host
    kv.release(b)
    assert admitted_cost(kv, new_seq("a2", PROMPT_A), 1) == (4, 4)  # 3 promoted + 1 new


def test_swapping_back_in_is_priced() -> None:
    kv = make_kv(host=8)
    seq = new_seq("s", PROMPT_B[:18])
    start(kv, seq, 10)
    compute(kv, seq, 1)  # 11 computed: 2 cached blocks and a private partial one
    assert kv.swap_out(seq) == 1 and kv.is_swapped(seq)
    priced, taken = admitted_cost(kv, seq, 6)
    assert priced == taken and priced >= 4  # the swapped run and the chunk after it


def test_preemption_gives_back_only_what_nobody_else_uses() -> None:
    kv = make_kv()
    a, a2 = new_seq("a", PROMPT_A), new_seq("a2", [*PROMPT_A[:12], 99, 98])
    start(kv, a, 13)
    start(kv, a2, 2)  # shares a's three cached blocks
    view = StepKVView(kv, {}, {"a": a})
    priced = view.blocks_freed(SequenceView("a", a.num_tokens, a.num_computed_tokens, len(a.block_ids)))
    before = kv.num_free_blocks
    kv.release(a)
    assert priced == kv.num_free_blocks - before == 1  # its private 13th-token block only
