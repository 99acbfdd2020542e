"""Tail first within one instant: the order of blocks a cache touches at the same ``now``.

An engine touches a prompt's blocks root to tail with one timestamp (one
``admit``, one ``register_computed``). Recency by call order would make the
root the oldest of them and evict it first, which leaves the rest of the
chain cached but unreachable: a prefix cache can only hit block ``i`` when
blocks ``0..i-1`` are cached too. Ranking the blocks of one instant in
*reverse* call order evicts the tail first and keeps the reachable prefix —
what vLLM gets by freeing a sequence's blocks in reverse order::

    hooks at t=5: on_insert(a) on_insert(b) on_insert(c)       (a = root)
    call order:     ... | a b c      -> evicts a first: b, c unreachable
    tail first:     ... | c b a      -> evicts c first: a, b still hit

``now == 0.0`` (the protocol default: the caller has no clock) is never an
instant: every call then stands alone and call order rules, as in LRU.
Two tools, one per kind of policy: :class:`TouchOrder` numbers touches for
heaps, :class:`InstantBatch` reorders the tail of ``OrderedDict`` queues.
"""

from __future__ import annotations

from collections import OrderedDict

from sagellm.core.types import BlockId

_SLOTS_PER_INSTANT = 1 << 32  # touches one instant can hold before numbers of two instants could meet


class TouchOrder:
    """Unique touch numbers: increasing across instants, decreasing within one.

    A heap keyed ``(priority, touch number)`` then breaks priority ties
    oldest instant first and, inside an instant, deepest block first.
    ``tail_first=False`` numbers plain call order (every call its own instant).
    """

    __slots__ = ("_instant", "_now", "_position", "_tail_first")

    def __init__(self, tail_first: bool = True) -> None:
        self._instant = 0
        self._position = 0
        self._now = 0.0
        self._tail_first = tail_first

    @property
    def instant(self) -> int:
        """Number of the instant the latest :meth:`next` fell in."""
        return self._instant

    def next(self, now: float) -> int:
        if now != self._now or now == 0.0 or not self._tail_first:
            self._now = now
            self._instant += 1
            self._position = 0
        self._position += 1
        return self._instant * _SLOTS_PER_INSTANT - self._position


class InstantBatch:
    """Moves blocks to the MRU end of ``OrderedDict`` queues, and reorders each instant tail first.

    Policies touch blocks through :meth:`touch` instead of appending
    themselves; when the instant ends (a touch with another ``now``) or a
    decision starts (:meth:`flush`), the instant's blocks are moved to the
    MRU end once more in reverse order: the root ends most recent, the tail
    least. O(1) per touch, amortised.
    """

    __slots__ = ("_now", "_touched")

    def __init__(self) -> None:
        self._touched: list[tuple[OrderedDict[BlockId, None], BlockId]] = []
        self._now = 0.0

    def touch(self, queue: OrderedDict[BlockId, None], block_id: BlockId, now: float) -> None:
        """Append ``block_id`` to ``queue``'s MRU end (moving it if present) as touched at ``now``."""
        if now != self._now:
            self.flush()
            self._now = now
        if block_id in queue:
            queue.move_to_end(block_id)
        else:
            queue[block_id] = None
        if now != 0.0:
            self._touched.append((queue, block_id))

    def flush(self) -> None:
        """Apply the tail-first order to the instant so far; later touches start a new batch."""
        touched = self._touched
        if len(touched) > 1:
            seen: set[BlockId] = set()
            for queue, block_id in reversed(touched):
                if block_id not in seen and block_id in queue:
                    seen.add(block_id)
                    queue.move_to_end(block_id)
        touched.clear()
