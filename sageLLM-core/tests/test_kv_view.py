"""Block arithmetic, written once in core, and the arithmetic KV view builders plan with by default."""

from __future__ import annotations

from sagellm.core.protocols import KVView
from sagellm.core.types import ArithmeticKVView, SequenceView, blocks_for, blocks_to_admit, blocks_to_grow


def view(computed: int = 0, held: int = 0, cached: int = 0) -> SequenceView:
    return SequenceView("s", 100, computed, held, num_cached_tokens=cached)


def test_blocks_for_rounds_up() -> None:
    assert [blocks_for(n, 4) for n in (0, 1, 4, 5, 8, 9)] == [0, 1, 1, 2, 2, 3]


def test_blocks_to_grow_matches_the_diagram() -> None:
    assert blocks_to_grow(view(computed=6, held=2), 5, 4) == 1
    assert blocks_to_grow(view(computed=8, held=2), 1, 4) == 1  # at a block boundary
    assert blocks_to_grow(view(computed=7, held=2), 1, 4) == 0  # fills the last slot
    assert blocks_to_grow(view(computed=4, held=3), 1, 4) == 0  # holds extra blocks: never negative


def test_blocks_to_admit_counts_only_what_the_cache_does_not_supply() -> None:
    assert blocks_to_admit(view(cached=8), 5, 4) == 2
    assert blocks_to_admit(view(cached=6), 4, 4) == 2  # partial cached block is re-allocated
    assert blocks_to_admit(view(cached=0), 1, 4) == 1


def test_the_arithmetic_view_grows_running_and_admits_waiting_sequences() -> None:
    kv = ArithmeticKVView(block_size=4, num_free_blocks=9)
    assert isinstance(kv, KVView) and kv.num_free_blocks == 9
    assert kv.blocks_needed(view(computed=6, held=2), 5) == 1
    assert kv.blocks_needed(view(cached=8), 5) == 2
