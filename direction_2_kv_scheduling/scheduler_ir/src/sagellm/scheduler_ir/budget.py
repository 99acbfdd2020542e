"""What one step may still spend: tokens, sequence slots and KV blocks.

Every policy (FIFO, priority, SLO-aware, ...) makes the same three kinds of
decision -- run a chunk, admit a sequence, preempt a sequence -- and each
one moves the same three counters. Keeping the counters in one small
mutable object, updated incrementally, is what keeps a build O(n): nothing
is ever re-summed over the plan so far.

Block arithmetic
----------------
A sequence that already holds blocks grows into new ones::

    block_size = 4, computed = 6, new = 5, held = 2

    tokens  | 0 1 2 3 | 4 5 6 7 | 8 9 10 . |
    blocks  [   b0    ][   b1    ][   b2    ]
             <---- held (2) ---->  grow 1
            <-- computed --><-- new -->
    need = ceil((6 + 5) / 4) - 2 = 1

A waiting sequence admitted after a prefix hit gets its full cached blocks
with the hit; only the rest, including a partial last cached block, is new::

    block_size = 4, cached = 8, new = 5

    tokens  | 0 1 2 3 | 4 5 6 7 | 8 9 10 11 | 12 . . . |
    blocks  [   b0    ][   b1    ][    b2    ][   b3    ]
            <--- from the cache -><------- allocate ----->
    need = ceil((8 + 5) / 4) - 8 // 4 = 2
"""

from __future__ import annotations

from dataclasses import dataclass

from sagellm.core.types import SequenceView


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def blocks_to_grow(view: SequenceView, num_new_tokens: int, block_size: int) -> int:
    """New blocks a *running* sequence needs to hold ``num_new_tokens`` more tokens."""
    # ceil_div and max() written out: this runs once per running sequence per step
    need = -(-(view.num_computed_tokens + num_new_tokens) // block_size) - view.num_blocks_held
    return need if need > 0 else 0


def blocks_to_admit(view: SequenceView, num_new_tokens: int, block_size: int) -> int:
    """New blocks a *waiting* sequence needs when admitted at its cached prefix."""
    cached = view.num_cached_tokens
    return max(0, ceil_div(cached + num_new_tokens, block_size) - cached // block_size)


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
    block_size: int

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
