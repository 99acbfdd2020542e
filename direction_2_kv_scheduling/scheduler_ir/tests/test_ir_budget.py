"""The step budget every policy shares: tokens, slots, and blocks at the KV view's prices."""

from __future__ import annotations

from sagellm.core.types import ArithmeticKVView, SequenceView
from sagellm.scheduler_ir import StepBudget


def test_budget_charges_and_refunds() -> None:
    budget = StepBudget(tokens_left=10, seqs_left=2, free_blocks=3, kv=ArithmeticKVView(4, 3))
    budget.charge(num_tokens=10, num_blocks=3)
    assert budget.is_exhausted and not budget.fits_blocks(1)
    budget.refund_blocks(2)
    assert budget.fits_blocks(2) and budget.seqs_left == 1
    budget.cap_seqs(-3)
    assert budget.seqs_left == 0


def test_block_costs_come_from_the_view() -> None:
    budget = StepBudget(tokens_left=10, seqs_left=2, free_blocks=3, kv=ArithmeticKVView(4, 3))
    assert budget.blocks_needed(SequenceView("s", 100, 6, 2), 5) == 1
