"""LMDeploy's scheduler sequences as sageLLM's scheduler IR, and a sageLLM plan back as sequence ids.

LMDeploy alternates prefill steps (waiting sequences start, running ones
sit out) and decode steps (running sequences grow by one token), while a
sageLLM builder plans one mixed step. The snapshot therefore shows only
what the LMDeploy step can run::

    prefill step: waiting  -> SequenceView(num_tokens = all ids, computed = history, cached = index hit)
                  running  -> SequenceView(num_tokens = computed = history)   holds a slot and its blocks
    decode step:  running  -> SequenceView(num_tokens = all ids, computed = history)   one new token each
                  waiting  -> not shown (a decode step admits nothing)

The builder's plan is read back as ids in chunk order: the admitted ones for
a prefill step, the ones it runs (then the ones it preempts) for a decode step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from sagellm.core.types import ExecutionPlan, SchedulerState, SequenceView

# Tokens the prefix index would supply to a waiting sequence (0 when there is no index).
CachedTokens = Callable[["LMDeploySequence"], int]


class LMDeploySequence(Protocol):
    """The part of LMDeploy's ``SchedulerSequence`` the adapter reads (``lmdeploy.pytorch.messages``)."""

    seq_id: int
    arrive_time: float
    num_new_tokens: int
    adapter_name: str | None
    sampling_param: Any
    logical_blocks: Any
    history_cache: Any

    @property
    def num_history_ids(self) -> int: ...

    @property
    def num_all_ids(self) -> int: ...

    @property
    def num_valid_ids(self) -> int: ...

    @property
    def num_blocks(self) -> int: ...


def sequence_view(seq: LMDeploySequence, *, runs: bool, num_cached_tokens: int = 0) -> SequenceView:
    """One sequence as the builder sees it; ``runs=False``: it holds its slot and blocks but computes nothing."""
    computed = seq.num_history_ids
    return SequenceView(
        request_id=str(seq.seq_id),
        num_tokens=seq.num_all_ids if runs else computed,
        num_computed_tokens=computed,
        num_blocks_held=seq.num_blocks,
        arrival_time=float(seq.arrive_time),
        num_cached_tokens=max(computed, num_cached_tokens),
        num_prompt_tokens=seq.num_valid_ids - seq.num_new_tokens,
        max_tokens=int(getattr(seq.sampling_param, "max_new_tokens", 0) or 0),
    )


def scheduler_state(
    is_prefill: bool,
    candidates: Sequence[LMDeploySequence],
    running: Iterable[LMDeploySequence],
    *,
    num_free_blocks: int,
    block_size: int,
    cached_tokens: CachedTokens | None = None,
    now: float = 0.0,
) -> SchedulerState:
    """The snapshot of one LMDeploy step: ``candidates`` are its waiting (prefill) or running (decode) sequences."""
    if is_prefill:
        waiting = tuple(
            sequence_view(seq, runs=True, num_cached_tokens=cached_tokens(seq) if cached_tokens else 0)
            for seq in candidates
        )
        idle = tuple(sequence_view(seq, runs=False) for seq in running)
        return SchedulerState(idle, waiting, num_free_blocks, block_size, now)
    views = tuple(sequence_view(seq, runs=True) for seq in candidates)
    return SchedulerState(views, (), num_free_blocks, block_size, now)


def planned_ids(is_prefill: bool, plan: ExecutionPlan, candidates: Iterable[LMDeploySequence]) -> list[int]:
    """The step's sequence ids: admitted ones (prefill) or run ones (decode) in chunk order.

    The hook can pick and order but not free blocks, so a decode plan's
    preempted sequences go to the *tail*, first victim last: LMDeploy's
    decode loop preempts from the tail of its list when a sequence's blocks
    do not fit, which is where the builder found them too::

        plan: run [a, b], preempted (d, c)   ->   seq_ids [a, b, c, d]   LMDeploy pops d, then c
    """
    by_request = {str(seq.seq_id): seq.seq_id for seq in candidates}
    admitted = set(plan.admitted)
    ids = [
        by_request[chunk.request_id]
        for chunk in plan.chunks
        if chunk.request_id in by_request and (chunk.request_id in admitted) == is_prefill
    ]
    if not is_prefill:
        ids += [by_request[request_id] for request_id in reversed(plan.preempted) if request_id in by_request]
    return ids
