"""The decisions of one step, recorded in order and frozen into a plan.

Policies append to plain lists while they decide and build the immutable
:class:`ExecutionPlan` once at the end; building tuples per decision would
make a step quadratic in the number of sequences.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sagellm.core.types import ExecutionPlan, ScheduledChunk, SequenceView
from sagellm.core.types.plan import PreemptionMode
from sagellm.scheduler_ir.preemption import ModeChooser


def is_decode_chunk(view: SequenceView, is_running: bool) -> bool:
    """A decode is one generated token of a running sequence.

    A running sequence with one uncomputed token that is still inside its
    prompt (the last token of a chunked prefill) is prefill work, and a
    freshly admitted sequence is always prefill, even after a long prefix hit.
    """
    return is_running and view.num_uncomputed_tokens == 1 and view.num_tokens > view.num_prompt_tokens


@dataclass(slots=True)
class PlanLedger:
    """Chunks, admissions and preemptions decided so far in this step.

    ``choose_mode`` picks recompute or swap per victim; None recomputes all.
    """

    choose_mode: ModeChooser | None = None
    chunks: list[ScheduledChunk] = field(default_factory=list)
    admitted: list[str] = field(default_factory=list)
    preempted: list[str] = field(default_factory=list)
    swapped_out: list[str] = field(default_factory=list)

    def run(self, view: SequenceView, num_tokens: int) -> None:
        """Schedule the next ``num_tokens`` of a running sequence."""
        self.chunks.append(
            ScheduledChunk(view.request_id, view.num_computed_tokens, num_tokens, is_decode_chunk(view, True))
        )

    def admit(self, view: SequenceView, num_tokens: int) -> None:
        """Move a waiting sequence to running and schedule its first chunk after the cached prefix."""
        self.admitted.append(view.request_id)
        self.chunks.append(ScheduledChunk(view.request_id, view.num_cached_tokens, num_tokens, False))

    def preempt(self, view: SequenceView) -> None:
        self.preempted.append(view.request_id)
        if self.choose_mode is not None and self.choose_mode(view) is PreemptionMode.SWAP:
            self.swapped_out.append(view.request_id)

    def to_plan(self, policy: str = "") -> ExecutionPlan:
        return ExecutionPlan(
            chunks=tuple(self.chunks),
            admitted=tuple(self.admitted),
            preempted=tuple(self.preempted),
            swapped_out=tuple(self.swapped_out),
            policy=policy,
        )
