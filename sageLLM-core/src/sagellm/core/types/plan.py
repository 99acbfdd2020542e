"""The scheduler IR: what one engine step should compute.

An :class:`IRBuilder` turns a snapshot of the queues (:class:`SchedulerState`)
into an :class:`ExecutionPlan`. The builder decides; the engine applies the
decision (allocates blocks, runs the model). Keeping the builder a pure
function of a snapshot makes policies swappable and testable without a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class PreemptionMode(str, Enum):
    """What happens to a preempted sequence's KV.

    RECOMPUTE frees the blocks and recomputes the context on readmission;
    SWAP copies the blocks to host memory and copies them back. A builder
    chooses SWAP only when told the engine can swap.
    """

    RECOMPUTE = "recompute"
    SWAP = "swap"


@dataclass(frozen=True, slots=True)
class SequenceView:
    """What a scheduler may know about one sequence (read-only).

    ``num_cached_tokens`` is, for a waiting sequence, the prefix the cache
    would supply if it were admitted now (tokens that need no compute).
    """

    request_id: str
    num_tokens: int
    num_computed_tokens: int
    num_blocks_held: int
    arrival_time: float = 0.0
    priority: int = 0
    num_cached_tokens: int = 0
    num_prompt_tokens: int = 0
    max_tokens: int = 0
    last_token_time: float | None = None  # when the latest output token was produced; None: none yet or unknown

    @property
    def num_uncomputed_tokens(self) -> int:
        return self.num_tokens - self.num_computed_tokens


@dataclass(frozen=True, slots=True)
class SchedulerState:
    """Snapshot handed to :meth:`IRBuilder.build` each step, with the engine's KV view.

    ``num_free_blocks`` and ``block_size`` are the view's numbers at the
    snapshot; block *costs* come from the view alone.
    """

    running: tuple[SequenceView, ...]
    waiting: tuple[SequenceView, ...]
    num_free_blocks: int  # free plus evictable (cached but unreferenced)
    block_size: int
    now: float = 0.0


@dataclass(frozen=True, slots=True)
class ScheduledChunk:
    """Run ``num_tokens`` tokens of a sequence, starting at ``start``.

    ``start`` is where the sequence's KV ends when the plan is applied
    (after a prefix hit it skips the cached part); the engine checks it
    against the sequence before running the chunk::

        [ cached | computed | <- this chunk -> | rest of prompt ]
                            ^start             ^start+num_tokens
    """

    request_id: str
    start: int
    num_tokens: int
    is_decode: bool = False


@dataclass(frozen=True, slots=True)
class ExecutionPlan:
    """One step of work. Applied in order: preempt, admit, run chunks."""

    chunks: tuple[ScheduledChunk, ...] = ()
    admitted: tuple[str, ...] = ()  # waiting -> running this step
    preempted: tuple[str, ...] = ()  # running -> waiting, blocks freed on the device
    swapped_out: tuple[str, ...] = ()  # the preempted ids whose KV goes to host memory; the rest recompute
    policy: str = ""  # which policy ordered this step (an adaptive builder names the one it chose)

    def preemption_mode(self, request_id: str) -> PreemptionMode | None:
        """How ``request_id`` is preempted this step; None if it is not."""
        if request_id not in self.preempted:
            return None
        return PreemptionMode.SWAP if request_id in self.swapped_out else PreemptionMode.RECOMPUTE

    @property
    def num_batched_tokens(self) -> int:
        return sum(c.num_tokens for c in self.chunks)

    @property
    def prefill_batch(self) -> tuple[ScheduledChunk, ...]:
        """Chunks that process prompt tokens (name kept from sageLLM's API)."""
        return tuple(c for c in self.chunks if not c.is_decode)

    @property
    def decode_batch(self) -> tuple[ScheduledChunk, ...]:
        return tuple(c for c in self.chunks if c.is_decode)

    @property
    def is_empty(self) -> bool:
        return not self.chunks and not self.preempted
