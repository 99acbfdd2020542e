"""Priority scheduling with aging: urgent first, but nobody waits forever.

``Request.priority`` is an integer, lower = more urgent (vLLM's convention).
Strict priority starves: a steady stream of urgent requests keeps a
low-priority one out for good. Aging lowers a request's effective priority
by ``aging_rate`` levels per second it has been in the system::

    effective(v) = v.priority - aging_rate × (now - v.arrival_time)

Comparing two requests, ``now`` cancels out, so the order is that of the
*virtual arrival* ``priority + aging_rate × arrival_time``: a request with
priority ``p`` is treated as if it had arrived ``p / aging_rate`` seconds
later. That gives the starvation bound: request A is ahead of every request
B that arrives more than ``(A.priority - B.priority) / aging_rate`` seconds
after it, so only a bounded stretch of arrivals can overtake A.

    aging_rate = 1/s;  A: priority 10, arrived t=0;  B: priority 0, arrives t
    A's virtual arrival 10, B's t  ->  B overtakes A only while t < 10

Running sequences are served in the same order and preempted from its tail
(least urgent, newest first on ties); admission follows it without skipping
the head, as FIFO does. ``aging_rate = 0`` is strict priority (no bound).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from sagellm.core.errors import ConfigError
from sagellm.core.types import SchedulerState, SequenceView
from sagellm.scheduler_ir.base import BaseIRBuilder, StepOrder
from sagellm.scheduler_ir.fifo import by_arrival


def by_urgency(views: Iterable[SequenceView], aging_rate: float) -> list[SequenceView]:
    """Smallest virtual arrival first; ties by arrival, then snapshot order.

    Two stable sorts (arrival, then a float key) cost about two thirds of
    one sort on a ``(virtual, arrival)`` tuple key: float comparisons are
    cheap, tuple comparisons are not, and this runs on every step.
    """
    ordered = sorted(views, key=by_arrival)
    ordered.sort(key=lambda v: v.priority + aging_rate * v.arrival_time)
    return ordered


class PriorityIRBuilder(BaseIRBuilder):
    """Most urgent first (lower ``priority``), aged by ``aging_rate`` levels per second of waiting."""

    option_names = BaseIRBuilder.option_names | {"aging_rate"}

    def __init__(
        self,
        max_num_seqs: int = 64,
        max_num_batched_tokens: int = 512,
        enable_chunked_prefill: bool = True,
        *,
        aging_rate: float = 1.0,
        **common: Any,
    ) -> None:
        super().__init__(max_num_seqs, max_num_batched_tokens, enable_chunked_prefill, **common)
        if not isinstance(aging_rate, (int, float)) or not math.isfinite(aging_rate) or aging_rate < 0:
            raise ConfigError(f"aging_rate must be a finite number >= 0 (got {aging_rate!r})")
        self.aging_rate = float(aging_rate)

    @property
    def name(self) -> str:
        return "priority"

    def order(self, state: SchedulerState) -> StepOrder:
        return StepOrder(by_urgency(state.running, self.aging_rate), by_urgency(state.waiting, self.aging_rate))
