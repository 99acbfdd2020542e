"""The two phases of a continuous-batching step, shared by every policy.

A policy decides *order*: which running sequence is served first (and, by
the same token, which is preempted first: the tail of the queue) and which
waiting sequence is admitted first. These functions do the rest -- size the
chunk, find the blocks, preempt when short -- against a :class:`StepBudget`
and record the outcome in a :class:`PlanLedger`.

Prefill, chunked prefill and decode are one mechanism (as in vLLM v1): each
sequence has ``num_tokens`` and ``num_computed_tokens`` and a step runs
``min(uncomputed, tokens_left)`` of the difference::

    [ computed | <-- this step --> | later steps ]
               ^num_computed       ^+num_new     ^num_tokens
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from sagellm.core.types import SequenceView
from sagellm.scheduler_ir.budget import StepBudget
from sagellm.scheduler_ir.errors import InvalidSchedulerStateError
from sagellm.scheduler_ir.ledger import PlanLedger


def tokens_to_run(remaining: int, budget: StepBudget, chunked: bool) -> int | None:
    """Tokens this step gives a sequence with ``remaining`` uncomputed tokens; None: it waits.

    Without chunked prefill a sequence runs whole or not at all, so one whose
    remaining tokens exceed what is left of the budget waits for a later step.
    """
    if remaining <= 0 or budget.tokens_left <= 0:
        return None
    if remaining > budget.tokens_left and not chunked:
        return None
    return min(remaining, budget.tokens_left)


def preempt(view: SequenceView, budget: StepBudget, ledger: PlanLedger) -> None:
    """The sequence goes back to waiting and its device blocks are freed (recompute or swap alike)."""
    ledger.preempt(view)
    budget.refund_blocks(budget.kv.blocks_freed(view))


def make_room(
    view: SequenceView, num_blocks: int, queue: deque[SequenceView], budget: StepBudget, ledger: PlanLedger
) -> bool:
    """Preempt from the tail of ``queue`` until ``num_blocks`` fit; False if ``view`` had to go itself.

    ``queue`` holds the running sequences not yet visited, in service order,
    so its tail is the one the policy values least. When it is empty, the
    sequence being scheduled is the least valued left and preempts itself.
    """
    while not budget.fits_blocks(num_blocks):
        if not queue:
            preempt(view, budget, ledger)
            return False
        preempt(queue.pop(), budget, ledger)
    return True


def schedule_running(queue: deque[SequenceView], budget: StepBudget, ledger: PlanLedger, chunked: bool) -> None:
    """Serve running sequences in queue order, preempting from the tail when blocks run out.

    Consumes ``queue``. Sequences with nothing to compute (or, without
    chunking, too much for what is left) are passed over and keep their blocks.
    """
    while queue and not budget.is_exhausted:
        view = queue.popleft()
        num_new = tokens_to_run(view.num_uncomputed_tokens, budget, chunked)
        if num_new is None:
            continue
        num_blocks = budget.blocks_needed(view, num_new)
        # the common case (blocks fit) skips the call: this loop runs once per running sequence
        if num_blocks > budget.free_blocks and not make_room(view, num_blocks, queue, budget, ledger):
            return
        budget.charge(num_new, num_blocks)
        ledger.run(view, num_new)


def try_admit(view: SequenceView, budget: StepBudget, ledger: PlanLedger, chunked: bool) -> bool:
    """Admit one waiting sequence at its cached prefix if its first chunk fits; report whether it did."""
    if budget.is_exhausted:
        return False
    remaining = view.num_tokens - view.num_cached_tokens
    if remaining <= 0:
        raise InvalidSchedulerStateError(
            f"waiting sequence {view.request_id!r} has {view.num_cached_tokens} cached of {view.num_tokens} tokens; "
            "the prefix lookup must leave at least one token to compute (its logits sample the next token)"
        )
    num_new = tokens_to_run(remaining, budget, chunked)
    if num_new is None:
        return False
    num_blocks = budget.blocks_needed(view, num_new)
    if not budget.fits_blocks(num_blocks):
        return False
    budget.charge(num_new, num_blocks)
    ledger.admit(view, num_new)
    return True


def admit_in_order(waiting: Iterable[SequenceView], budget: StepBudget, ledger: PlanLedger, chunked: bool) -> None:
    """Admit waiting sequences in the given order, stopping at the first that does not fit.

    Lazy on purpose: an iterator is consumed only up to the first misfit,
    and not at all once the step is full (a ranking may be costly to advance).
    """
    views = iter(waiting)
    while not budget.is_exhausted:
        view = next(views, None)
        if view is None or not try_admit(view, budget, ledger, chunked):
            return
