"""A binary min-heap of blocks whose keys can change in O(log n): lazy deletion.

Re-keying a block pushes a new entry and leaves the old one in place; each
entry carries a sequence number and an entry counts only while it is the
block's latest (``_live[block] == seq``). Stale entries are skipped when they
surface and the heap is rebuilt from the live ones once stale entries
outnumber them, so every operation costs O(log n) amortised and memory stays
within a constant factor of the tracked blocks::

    heap: (3.0, #7, blk 5)  (4.0, #2, blk 9)  (5.0, #9, blk 5) ...
          stale: blk 5 was re-keyed as #9     live

The sequence number also breaks ties between equal keys: the block whose key
was set first comes out first, so equal priorities degrade to LRU, not to
block-id order (a policy may pass its own unique order instead).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from itertools import count

from sagellm.core.types import BlockId

Entry = tuple[float, int, BlockId]
"""(key, sequence number, block): the order of the heap."""

_COMPACT_SLACK = 1024  # never rebuild a tiny heap: stale entries are cheap until they dominate


class LazyHeap:
    """Blocks ordered by a float key, smallest first; ``push`` both adds and re-keys."""

    __slots__ = ("_heap", "_live", "_seq")

    def __init__(self) -> None:
        self._heap: list[Entry] = []
        self._live: dict[BlockId, tuple[float, int]] = {}
        self._seq = count()

    def push(self, block_id: BlockId, key: float, order: int | None = None) -> None:
        """Set (or replace) the key of ``block_id``.

        ``order`` replaces the sequence number as tie-breaker (see
        :class:`~sagellm.eviction_policy.instant_order.TouchOrder`); it must be
        unique, and a heap must use either explicit orders or none.
        """
        seq = next(self._seq) if order is None else order
        self._live[block_id] = (key, seq)
        heapq.heappush(self._heap, (key, seq, block_id))
        if len(self._heap) > 2 * len(self._live) + _COMPACT_SLACK:
            self._compact()

    def discard(self, block_id: BlockId) -> None:
        """Forget ``block_id``; its heap entries go stale."""
        self._live.pop(block_id, None)

    def pop(self) -> Entry | None:
        """Remove and return the live entry ``(key, seq, block)`` with the smallest key; ``None`` when empty."""
        heap, live = self._heap, self._live
        while heap:
            entry = heapq.heappop(heap)
            current = live.get(entry[2])
            if current is not None and current[1] == entry[1]:
                del live[entry[2]]
                return entry
        return None

    def restore(self, entry: Entry) -> None:
        """Put back an entry :meth:`pop` returned, keeping its place among equal keys."""
        self._live[entry[2]] = (entry[0], entry[1])
        heapq.heappush(self._heap, entry)

    def peek_key(self) -> float | None:
        """Smallest live key without removing it (drops stale entries on the way)."""
        heap, live = self._heap, self._live
        while heap:
            key, seq, block_id = heap[0]
            entry = live.get(block_id)
            if entry is not None and entry[1] == seq:
                return key
            heapq.heappop(heap)
        return None

    def key(self, block_id: BlockId) -> float | None:
        entry = self._live.get(block_id)
        return None if entry is None else entry[0]

    def _compact(self) -> None:
        self._heap = [(key, seq, block_id) for block_id, (key, seq) in self._live.items()]
        heapq.heapify(self._heap)

    def __contains__(self, block_id: object) -> bool:
        return block_id in self._live

    def __len__(self) -> int:
        return len(self._live)

    def __iter__(self) -> Iterator[BlockId]:
        return iter(self._live)
