"""Result of :meth:`RadixPrefixIndex.match`: the block-aligned hit plus a partial block."""

from __future__ import annotations

from dataclasses import dataclass

from sagellm.core.types import BlockId, PrefixHit


@dataclass(frozen=True, slots=True)
class RadixMatch:
    """What the tree holds for a query, down to the token.

    ::

        query    | b0 | b1 | t t t x x          block_size 4
        cached   | b0 | b1 | t t t y |         next cached block after the hit
        hit      | b0 b1 |                     8 tokens, reusable as they are
        partial            | t t t |           3 tokens in ``partial_block_id``

    The partial block cannot be shared (the query writes a different token
    into it), but an engine may copy it and skip recomputing
    ``num_partial_tokens`` tokens (copy-on-write).

    Every id in the result carries one reference taken by ``match``:
    ``hit.block_ids`` like a lookup, and ``partial_block_id`` so it cannot be
    evicted before the copy; the caller releases it once copied.
    """

    hit: PrefixHit
    num_partial_tokens: int = 0
    partial_block_id: BlockId | None = None

    @property
    def num_matched_tokens(self) -> int:
        """Tokens whose KV the cache holds: the full blocks plus the partial one."""
        return self.hit.num_matched_tokens + self.num_partial_tokens
