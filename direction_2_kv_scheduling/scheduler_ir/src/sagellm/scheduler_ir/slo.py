"""SLO-aware scheduling: rank by deadline slack, keep decodes within TPOT.

Two targets, ``ttft_slo_ms`` (time to first token) and ``tpot_slo_ms``
(time per output token), drive two decisions (``deadline.py`` has the
clock):

1. **Step size.** A step's tokens all finish together, so one long prefill
   chunk delays every decode in the batch. When the decode due soonest
   would miss its TPOT deadline behind a full-budget step, the step is cut
   to what the cost model says finishes in time::

       max_tokens = max(tokens_within(due - now), decodes + min_prefill_tokens)

   ``min_prefill_tokens`` keeps prefill moving even when decodes alone fill
   the slack (else new requests would never start).
2. **Order.** Running decodes come first, the one whose next token is due
   soonest first; running prefills follow, then waiting requests, both
   ranked by :func:`rank_by_slack` (starving, then feasible with the least
   slack first, then those that will miss anyway), with prefill draining at
   this step's rate. The running tail -- prefills with the most slack, or
   already hopeless -- is preempted first.
"""

from __future__ import annotations

import math
from typing import Any

from sagellm.core.errors import ConfigError
from sagellm.core.types import SchedulerState, SequenceView
from sagellm.scheduler_ir.base import BaseIRBuilder, StepOrder
from sagellm.scheduler_ir.deadline import Drain, SLOTargets, rank_by_slack
from sagellm.scheduler_ir.fifo import by_arrival
from sagellm.scheduler_ir.ledger import is_decode_chunk


def _positive_ms(name: str, value: object) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be a finite number of milliseconds > 0 (got {value!r})")
    return float(value) / 1000.0


class SLOIRBuilder(BaseIRBuilder):
    """Least TTFT slack first; prefill tokens bounded so running decodes keep their TPOT."""

    option_names = BaseIRBuilder.option_names | {"ttft_slo_ms", "tpot_slo_ms", "max_wait_ms", "min_prefill_tokens"}

    def __init__(
        self,
        max_num_seqs: int = 64,
        max_num_batched_tokens: int = 512,
        enable_chunked_prefill: bool = True,
        *,
        ttft_slo_ms: float = 2000.0,
        tpot_slo_ms: float = 200.0,
        max_wait_ms: float | None = None,
        min_prefill_tokens: int = 16,
        **common: Any,
    ) -> None:
        super().__init__(max_num_seqs, max_num_batched_tokens, enable_chunked_prefill, **common)
        ttft_s = _positive_ms("ttft_slo_ms", ttft_slo_ms)
        max_wait_s = 10 * ttft_s if max_wait_ms is None else _positive_ms("max_wait_ms", max_wait_ms)
        self.targets = SLOTargets(ttft_s, _positive_ms("tpot_slo_ms", tpot_slo_ms), max_wait_s)
        if not isinstance(min_prefill_tokens, int) or isinstance(min_prefill_tokens, bool) or min_prefill_tokens < 0:
            raise ConfigError(f"min_prefill_tokens must be an integer >= 0 (got {min_prefill_tokens!r})")
        self.min_prefill_tokens = min_prefill_tokens

    @property
    def name(self) -> str:
        return "slo"

    def order(self, state: SchedulerState) -> StepOrder:
        now = state.now
        decodes: list[SequenceView] = []
        prefills: list[SequenceView] = []
        for view in state.running:
            (decodes if is_decode_chunk(view, True) else prefills).append(view)
        # A decode's next token is due at last_token_time + TPOT (now + TPOT when unknown), so
        # ordering by that time is ordering by due time; ties by arrival (two stable float sorts).
        decodes.sort(key=by_arrival)
        decodes.sort(key=lambda v: now if v.last_token_time is None else v.last_token_time)
        first_due = self.targets.next_token_due(decodes[0], now) if decodes else None
        max_tokens = self.max_step_tokens(first_due, len(decodes), now)
        step_tokens = self.limits.max_num_batched_tokens if max_tokens is None else max_tokens
        drain = Drain(max(1, step_tokens - len(decodes)), self.cost.step_seconds(step_tokens))
        running = decodes
        running.extend(rank_by_slack(prefills, self.targets, drain, now, is_waiting=False))
        ahead = sum(v.num_uncomputed_tokens for v in prefills)
        waiting = rank_by_slack(state.waiting, self.targets, drain, now, is_waiting=True, work_ahead=ahead)
        return StepOrder(running, waiting, max_tokens)

    def max_step_tokens(self, first_due: float | None, num_decodes: int, now: float) -> int | None:
        """Token cap that lets the step finish before ``first_due``; None when the full budget does."""
        if first_due is None:
            return None
        allowed = self.cost.tokens_within(first_due - now)
        if allowed >= self.limits.max_num_batched_tokens:
            return None
        return max(allowed, num_decodes + self.min_prefill_tokens)
