"""First come, first served continuous batching (the vLLM v1 default policy)."""

from __future__ import annotations

from collections import deque
from operator import attrgetter

from sagellm.core.types import ExecutionPlan, SchedulerState
from sagellm.scheduler_ir.base import BaseIRBuilder
from sagellm.scheduler_ir.ledger import PlanLedger
from sagellm.scheduler_ir.phases import admit_in_order, schedule_running

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
    utilisation (priority, SLO-aware) build on :func:`try_admit` instead.

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

    def build(self, state: SchedulerState) -> ExecutionPlan:
        chunked = self.limits.enable_chunked_prefill
        budget = self.limits.new_budget(state)
        ledger = PlanLedger()
        schedule_running(deque(sorted(state.running, key=by_arrival)), budget, ledger, chunked)
        if not ledger.preempted:
            budget.cap_seqs(self.limits.max_num_seqs - len(state.running))
            admit_in_order(sorted(state.waiting, key=by_arrival), budget, ledger, chunked)
        return ledger.to_plan(self.next_step_id())
