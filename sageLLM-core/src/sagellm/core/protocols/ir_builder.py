"""Seam for scheduling policies: queue snapshot in, execution plan out."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from sagellm.core.types.plan import ExecutionPlan, SchedulerState


@runtime_checkable
class IRBuilder(Protocol):
    """Decides what the next step computes.

    Must respect: the token budget per step, the sequence limit, and the
    free-block count (preempting running sequences when decode would not
    fit). It must never schedule a sequence it also preempts.
    """

    @property
    def name(self) -> str: ...

    def build(self, state: SchedulerState) -> ExecutionPlan: ...


@runtime_checkable
class SwapCapableIRBuilder(IRBuilder, Protocol):
    """A builder that can preempt by swapping a sequence's KV to host memory instead of recomputing it.

    Only the engine knows whether its pool has a host tier and what a
    token's KV weighs, so it calls ``use_swap`` once, before the first
    build, when swapping is possible; a builder configured with swapping
    off keeps it off. A builder never told recomputes every victim.
    """

    def use_swap(self, kv_bytes_per_token: int) -> None: ...
