"""Seam for prefix caches: find KV blocks already computed for a token prefix."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from sagellm.core.types.kv import BlockId, PrefixHit


@runtime_checkable
class PrefixIndex(Protocol):
    """Maps block-aligned token prefixes to the KV blocks that hold them.

    Ownership contract (the engine relies on it):

    * ``lookup`` takes a reference on every matched block; the caller gives
      it back with ``release`` when its sequence no longer needs the block.
    * ``insert`` adopts blocks that were not cached yet and counts the
      inserting sequence as their first user (reference 1). It returns the
      adopted ids, so the caller knows which of its blocks to ``release``.
    * A block with no references is *evictable*; ``remove`` forgets it.
    * ``namespace`` keeps entries of different models or adapters apart.
    """

    @property
    def block_size(self) -> int: ...

    def lookup(self, tokens: Sequence[int], namespace: str = "") -> PrefixHit: ...

    def peek(self, tokens: Sequence[int], namespace: str = "") -> int:
        """Number of tokens ``lookup`` would match, without taking references."""
        ...

    def insert(self, tokens: Sequence[int], block_ids: Sequence[BlockId], namespace: str = "") -> list[BlockId]: ...

    def release(self, block_ids: Sequence[BlockId]) -> None: ...

    def is_evictable(self, block_id: BlockId) -> bool: ...

    def remove(self, block_ids: Sequence[BlockId]) -> None: ...

    def __contains__(self, block_id: object) -> bool: ...

    def __len__(self) -> int:
        """Number of cached blocks."""
        ...
