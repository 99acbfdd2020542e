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
