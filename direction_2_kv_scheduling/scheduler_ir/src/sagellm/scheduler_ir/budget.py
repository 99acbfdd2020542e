"""What one step may still spend: tokens, sequence slots and KV blocks.

Every policy (FIFO, priority, SLO-aware, ...) makes the same three kinds of
decision -- run a chunk, admit a sequence, preempt a sequence -- and each
one moves the same three counters. Keeping the counters in one small
mutable object, updated incrementally, is what keeps a build O(n): nothing
is ever re-summed over the plan so far.

Block costs come from the engine's :class:`~sagellm.core.protocols.KVView`
(``blocks_needed``): a waiting sequence's admission may also promote
lower-tier hit blocks, swap KV back in and pin evictable cached blocks,
which only the engine can count. Without an engine (tests, simulators) the
view is core's :class:`~sagellm.core.types.ArithmeticKVView`, where the
block arithmetic itself lives (``blocks_for``, ``blocks_to_grow``,
``blocks_to_admit``).
"""

from __future__ import annotations

from dataclasses import dataclass

from sagellm.core.protocols import KVView
from sagellm.core.types import SequenceView


@dataclass(slots=True)
class StepBudget:
    """Remaining allowance of the step being built (mutable, one per build).

    ``free_blocks`` starts at the snapshot's free-plus-evictable count, goes
    down with every chunk and up with every preemption (recompute preemption
    returns all of the victim's blocks).
    """

    tokens_left: int
    seqs_left: int
    free_blocks: int
    kv: KVView

    @property
    def is_exhausted(self) -> bool:
        """No further chunk can run this step, whatever its size."""
        return self.tokens_left <= 0 or self.seqs_left <= 0

    def cap_seqs(self, max_seqs: int) -> None:
        """Lower the slot allowance (e.g. to what the running set leaves for admission)."""
        self.seqs_left = max(0, min(self.seqs_left, max_seqs))

    def cap_tokens(self, max_tokens: int) -> None:
        """Lower the token allowance (e.g. so a step finishes within a latency target)."""
        self.tokens_left = max(0, min(self.tokens_left, max_tokens))

    def blocks_needed(self, view: SequenceView, num_new_tokens: int) -> int:
        """What a chunk of ``num_new_tokens`` costs ``view`` in device blocks (growth, or admission)."""
        return self.kv.blocks_needed(view, num_new_tokens)

    def fits_blocks(self, num_blocks: int) -> bool:
        return num_blocks <= self.free_blocks

    def charge(self, num_tokens: int, num_blocks: int) -> None:
        """Spend one slot, ``num_tokens`` tokens and ``num_blocks`` blocks on a chunk."""
        self.tokens_left -= num_tokens
        self.seqs_left -= 1
        self.free_blocks -= num_blocks

    def refund_blocks(self, num_blocks: int) -> None:
        """Return the blocks of a preempted sequence to the step's free pool."""
        self.free_blocks += num_blocks
