"""First come, first served continuous batching (the vLLM v1 default policy)."""

from __future__ import annotations

from operator import attrgetter

from sagellm.core.types import SchedulerState
from sagellm.scheduler_ir.base import BaseIRBuilder, StepOrder

by_arrival = attrgetter("arrival_time")


class FIFOIRBuilder(BaseIRBuilder):
    """Serve by arrival; preempt the newest; admit in arrival order.

    One step:

    1. Running sequences, oldest arrival first, each get
       ``min(uncomputed, tokens_left)`` tokens. When their blocks do not fit,
       the newest running sequence not yet scheduled is preempted
       (recompute: its blocks return to the pool); if the sequence being
       scheduled is itself the newest left, it preempts itself and the phase
       ends. Without chunked prefill a sequence whose remaining tokens exceed
       the budget left waits, and the ones behind it still run.
    2. Only if nothing was preempted: waiting sequences, oldest arrival
       first, are admitted at their cached prefix while a sequence slot
       (``max_num_seqs`` bounds the running set, as in vLLM), tokens and
       blocks remain.

    Why stop at the first waiting sequence that does not fit, rather than
    skip it for smaller ones behind it: FIFO's promise is that requests
    start in arrival order. Skipping would let a steady stream of short
    prompts take every block and token that frees up, so a long prompt at
    the head could wait forever. Policies that trade that fairness for
    utilisation would build on :func:`try_admit`; the package's other
    policies keep the same rule, in their own order. (``prefix_window``
    relaxes it on purpose, by at most ``window - 1`` places.)

    Why no admission after a preemption: a preemption means the pool is
    short of blocks; admitting new work would take the blocks the victim
    needs to come back and turn memory pressure into thrashing.

    Both queues are sorted by ``arrival_time`` (stable, so ties keep the
    snapshot's order): the snapshot's tuple order is not part of the
    contract, and a preempted sequence keeps its original arrival, so it is
    readmitted before newer requests.
    """

    @property
    def name(self) -> str:
        return "fifo"

    def order(self, state: SchedulerState) -> StepOrder:
        return StepOrder(sorted(state.running, key=by_arrival), sorted(state.waiting, key=by_arrival))
