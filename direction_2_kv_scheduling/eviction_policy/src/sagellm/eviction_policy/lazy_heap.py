"""A binary min-heap of blocks whose keys change cheaply: lazy deletion and lazy key raises.

Each tracked block has one *entry* in the heap, ``(key, order, block)``,
and a *current* ``(key, order)`` in a dict. Two ways to change a key:

* :meth:`push` replaces the entry (O(log n)); the old one goes stale and
  is skipped when it surfaces — any key change, up or down;
* :meth:`raise_key` only updates the dict (O(1)); the entry, now a lower
  bound, is fixed when it reaches the top: :meth:`pop` sees that the
  entry is behind the current key, re-inserts the block at its current key
  and looks again. Hot blocks, hit many times between decisions, cost one
  re-insert instead of one per hit::

      heap top: (3.0, #7, blk 5)   current[5] = (9.0, #31)  -> behind: re-insert at 9.0
                (4.0, #2, blk 9)   current[9] = (4.0, #2)   -> up to date: pop it

``order`` breaks ties between equal keys (smaller first); policies pass
unique touch numbers (:class:`~sagellm.eviction_policy.instant_order.TouchOrder`),
so equal priorities go oldest touch first, not block-id first. Stale
entries are dropped by a rebuild once they outnumber the live ones: every
operation is O(log n) amortised and memory stays linear in tracked blocks.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from itertools import count

from sagellm.core.types import BlockId

Entry = tuple[float, int, BlockId]
"""(key, order, block): the order of the heap."""

_COMPACT_SLACK = 1024  # never rebuild a tiny heap: stale entries are cheap until they dominate


class LazyHeap:
    """Blocks ordered by ``(key, order)``, smallest first."""

    __slots__ = ("_current", "_entry", "_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[Entry] = []
        self._entry: dict[BlockId, int] = {}  # order of the block's entry in the heap
        self._current: dict[BlockId, tuple[float, int]] = {}  # its true (key, order), never below the entry
        self._seq = count()

    def push(self, block_id: BlockId, key: float, order: int | None = None) -> None:
        """Set ``block_id``'s key to anything (adds the block if new); ``order`` must be unique if given."""
        order = next(self._seq) if order is None else order
        self._entry[block_id] = order
        self._current[block_id] = (key, order)
        heapq.heappush(self._heap, (key, order, block_id))
        if len(self._heap) > 2 * len(self._entry) + _COMPACT_SLACK:
            self._compact()

    def raise_key(self, block_id: BlockId, key: float, order: int | None = None) -> None:
        """Set a tracked block's key to ``(key, order)``, which must not sort before its current one: O(1).

        ``order=None`` keeps the block's current order.
        """
        if order is None:
            order = self._current[block_id][1]
        self._current[block_id] = (key, order)

    def discard(self, block_id: BlockId) -> None:
        """Forget ``block_id``; its entry goes stale."""
        if self._entry.pop(block_id, None) is not None:
            del self._current[block_id]

    def top(self, settle: Callable[[BlockId, float], float] | None = None) -> Entry | None:
        """The smallest up-to-date entry, left in the heap; ``None`` when empty.

        Stale entries on the way are dropped; an entry behind its block's
        current key is moved there in one sift (``heapreplace``) and the
        search goes on. ``settle(block, key)`` lets a policy raise a key it
        only knew a lower bound of when it ranked the block (GDSF's open
        segments): it returns the block's final key, never below ``key``. It
        runs on the entries that surface, so the policy pays for blocks that
        reach the top, not for every block it ranked.
        """
        return self._surface(settle, -1)

    def tidy(self, settle: Callable[[BlockId, float], float] | None = None, budget: int = 3) -> None:
        """:meth:`top`, looking at no more than ``budget`` entries: drops or moves the stale and lagging ones.

        Policies call it from their hooks: the work a raised key leaves for
        later is then done a little at a time between decisions, and a
        decision finds an up-to-date entry on top instead of fixing the
        ones that have lagged since the last one.
        """
        self._surface(settle, budget)

    def _surface(self, settle: Callable[[BlockId, float], float] | None, budget: int) -> Entry | None:
        """:meth:`top`, giving up (``None``) before a look at entry number ``budget + 1`` (``-1``: never)."""
        heap, entries, current = self._heap, self._entry, self._current
        while heap:
            if budget == 0:
                return None
            budget -= 1
            entry = heap[0]
            block_id = entry[2]
            if entries.get(block_id) != entry[1]:
                heapq.heappop(heap)  # stale: the block was removed or pushed again
                continue
            key, order = current[block_id]
            if settle is not None:
                key = settle(block_id, key)
            if key == entry[0] and order == entry[1]:
                return entry
            entries[block_id] = order  # behind its current key: put it where it belongs
            current[block_id] = (key, order)
            heapq.heapreplace(heap, (key, order, block_id))
        return None

    def pop(self, settle: Callable[[BlockId, float], float] | None = None) -> Entry | None:
        """Remove and return the smallest up-to-date entry (:meth:`top`); ``None`` when empty."""
        entry = self.top(settle)
        if entry is not None:
            self.pop_top()
        return entry

    def pop_top(self) -> Entry:
        """Remove the entry :meth:`top` has just returned (nothing may change the heap in between)."""
        entry = heapq.heappop(self._heap)
        del self._entry[entry[2]], self._current[entry[2]]
        return entry

    def restore(self, entry: Entry) -> None:
        """Put back an entry :meth:`pop` returned, unchanged."""
        self._entry[entry[2]] = entry[1]
        self._current[entry[2]] = (entry[0], entry[1])
        heapq.heappush(self._heap, entry)

    def key(self, block_id: BlockId) -> float | None:
        """Current key of a tracked block, ``None`` if untracked."""
        current = self._current.get(block_id)
        return None if current is None else current[0]

    def _compact(self) -> None:
        self._heap = [(key, order, block_id) for block_id, (key, order) in self._current.items()]
        self._entry = {block_id: order for block_id, (_, order) in self._current.items()}
        heapq.heapify(self._heap)

    def __contains__(self, block_id: object) -> bool:
        return block_id in self._entry

    def __len__(self) -> int:
        return len(self._entry)

    def __iter__(self) -> Iterator[BlockId]:
        return iter(self._entry)
