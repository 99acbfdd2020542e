"""Block arithmetic and the step budget (the helpers every policy shares)."""

from __future__ import annotations

from sagellm.core.types import SequenceView
from sagellm.scheduler_ir import StepBudget, blocks_to_admit, blocks_to_grow


def view(computed: int = 0, held: int = 0, cached: int = 0) -> SequenceView:
    return SequenceView("s", 100, computed, held, num_cached_tokens=cached)


def test_blocks_to_grow_matches_the_diagram() -> None:
    assert blocks_to_grow(view(computed=6, held=2), 5, 4) == 1
    assert blocks_to_grow(view(computed=8, held=2), 1, 4) == 1  # at a block boundary
    assert blocks_to_grow(view(computed=7, held=2), 1, 4) == 0  # fills the last slot
    assert blocks_to_grow(view(computed=4, held=3), 1, 4) == 0  # holds extra blocks: never negative


def test_blocks_to_admit_counts_only_what_the_cache_does_not_supply() -> None:
    assert blocks_to_admit(view(cached=8), 5, 4) == 2
    assert blocks_to_admit(view(cached=6), 4, 4) == 2  # partial cached block is re-allocated
    assert blocks_to_admit(view(cached=0), 1, 4) == 1


def test_budget_charges_and_refunds() -> None:
    budget = StepBudget(tokens_left=10, seqs_left=2, free_blocks=3, block_size=4)
    budget.charge(num_tokens=10, num_blocks=3)
    assert budget.is_exhausted and not budget.fits_blocks(1)
    budget.refund_blocks(2)
    assert budget.fits_blocks(2) and budget.seqs_left == 1
    budget.cap_seqs(-3)
    assert budget.seqs_left == 0
