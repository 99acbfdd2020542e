"""Block arithmetic, written once, and the KV view a scheduler plans with when no engine is behind it.

``blocks_for`` is the only place that turns tokens into blocks: the
scheduler's budget, the engine's KV manager and its length check all call
it. :class:`ArithmeticKVView` is the :class:`~sagellm.core.protocols.KVView`
of a cache that is nothing but that arithmetic (no lower tiers, no swapped
KV, hit blocks already pinned): what a builder sees in tests, and by default.
"""

from __future__ import annotations

from dataclasses import dataclass

from sagellm.core.types.plan import SequenceView


def blocks_for(num_tokens: int, block_size: int) -> int:
    """Blocks holding ``num_tokens`` KV slots (the last one may be partly empty)."""
    return -(-num_tokens // block_size)


def blocks_to_grow(view: SequenceView, num_new_tokens: int, block_size: int) -> int:
    """New blocks a sequence holding ``num_blocks_held`` needs for ``num_new_tokens`` more tokens.

    ``block_size = 4, computed = 6, new = 5, held = 2``: ceil(11 / 4) - 2 = 1.
    """
    need = blocks_for(view.num_computed_tokens + num_new_tokens, block_size) - view.num_blocks_held
    return need if need > 0 else 0


def blocks_to_admit(view: SequenceView, num_new_tokens: int, block_size: int) -> int:
    """New blocks a waiting sequence needs when admitted at its cached prefix (whose full blocks come with it).

    ``block_size = 4, cached = 8, new = 5``: ceil(13 / 4) - 8 // 4 = 2.
    """
    cached = view.num_cached_tokens
    return max(0, blocks_for(cached + num_new_tokens, block_size) - cached // block_size)


@dataclass(frozen=True, slots=True)
class ArithmeticKVView:
    """A KV view from arithmetic alone: ``num_free_blocks`` to spend, blocks per chunk from the sequence's view."""

    block_size: int
    num_free_blocks: int

    def blocks_needed(self, seq: SequenceView, num_new_tokens: int) -> int:
        if seq.num_blocks_held or seq.num_computed_tokens:
            return blocks_to_grow(seq, num_new_tokens, self.block_size)
        return blocks_to_admit(seq, num_new_tokens, self.block_size)

    def blocks_freed(self, seq: SequenceView) -> int:
        return seq.num_blocks_held
