"""Adaptive Replacement Cache: balance recency and frequency by learning from ghosts."""

from __future__ import annotations

from collections import OrderedDict

from sagellm.core.errors import ConfigError
from sagellm.core.types import BlockId, EvictionContext
from sagellm.eviction_policy.base import BaseEvictionPolicy
from sagellm.eviction_policy.instant_order import InstantBatch


class ARCEvictionPolicy(BaseEvictionPolicy):
    """ARC (Megiddo & Modha, FAST 2003) over the blocks the cache announces.

    Four LRU lists, oldest first::

        B1 (ghosts) | T1: seen once  ->|<- T2: seen twice+ | B2 (ghosts)
                           <-------- p -------->

    T1 holds blocks hit only at insert, T2 blocks hit again; evicted ids
    leave a ghost in B1 / B2. Re-inserting a B1 ghost means T1 was too small
    (recency would have paid): the target size ``p`` of T1 grows; a B2 ghost
    means frequency would have paid: ``p`` shrinks. A decision takes victims
    from T1's LRU end while T1 is larger than ``p``, else from T2's.

    ``capacity`` (c) bounds ``p`` and the ghosts (|T1|+|B1| <= c, all four
    <= 2c). The policy is never told the pool size, so by default c is the
    largest number of blocks it has tracked at once — the pool size once the
    cache has filled. Ghosts are keyed by block id: they help when ids name
    content (a content-addressed store, the simulator's hash ids); with a
    slot-indexed pool a ghost hit is only a guess. In-use blocks a decision
    meets count as hit — they move to the MRU end of T2 — so they are not
    re-scanned by every decision (as in :class:`LRUEvictionPolicy`),
    and blocks touched in one instant enter their list tail first
    (``tail_first``, :mod:`~sagellm.eviction_policy.instant_order`).
    Every hook is O(1); a decision is O(victims + in-use blocks met).
    """

    def __init__(self, capacity: int | None = None, tail_first: bool = True) -> None:
        if capacity is not None and capacity < 1:
            raise ConfigError(f"capacity must be >= 1, got {capacity}")
        self._t1: OrderedDict[BlockId, None] = OrderedDict()
        self._t2: OrderedDict[BlockId, None] = OrderedDict()
        self._b1: OrderedDict[BlockId, None] = OrderedDict()
        self._b2: OrderedDict[BlockId, None] = OrderedDict()
        self._p = 0.0
        self._capacity = capacity or 0
        self._batch = InstantBatch() if tail_first else None

    @property
    def name(self) -> str:
        return "arc"

    @property
    def target_recent(self) -> float:
        """``p``: how many of the tracked blocks ARC currently wants in T1 (seen once)."""
        return self._p

    def on_insert(self, block_id: BlockId, now: float = 0.0) -> None:
        if block_id in self._t1 or block_id in self._t2:
            self.on_access(block_id, now)
            return
        if block_id in self._b1:  # recency would have kept it: favour T1
            self._p = min(float(self._c()), self._p + max(1.0, len(self._b2) / len(self._b1)))
            del self._b1[block_id]
            self._append(self._t2, block_id, now)
        elif block_id in self._b2:  # frequency would have kept it: favour T2
            self._p = max(0.0, self._p - max(1.0, len(self._b1) / len(self._b2)))
            del self._b2[block_id]
            self._append(self._t2, block_id, now)
        else:
            self._append(self._t1, block_id, now)
        tracked = len(self._t1) + len(self._t2)
        if tracked > self._capacity:
            self._capacity = tracked
        self._trim_ghosts()

    def on_access(self, block_id: BlockId, now: float = 0.0) -> None:
        if block_id in self._t1:
            del self._t1[block_id]
        elif block_id not in self._t2:
            return
        self._append(self._t2, block_id, now)

    def _append(self, side: OrderedDict[BlockId, None], block_id: BlockId, now: float) -> None:
        """To the MRU end of ``side`` (moving it if there)."""
        if self._batch is not None:
            self._batch.touch(side, block_id, now)
        elif block_id in side:
            side.move_to_end(block_id)
        else:
            side[block_id] = None

    def on_remove(self, block_id: BlockId) -> None:
        if block_id in self._t1:
            del self._t1[block_id]
            self._b1[block_id] = None
        elif block_id in self._t2:
            del self._t2[block_id]
            self._b2[block_id] = None
        else:
            return
        self._trim_ghosts()

    def select_victims(self, context: EvictionContext) -> list[BlockId]:
        wanted = context.num_blocks
        if wanted <= 0:
            return []
        if self._batch is not None:
            self._batch.flush()
        is_evictable = context.is_evictable
        victims: list[BlockId] = []
        in_use: tuple[list[BlockId], list[BlockId]] = ([], [])
        walks = (iter(self._t1), iter(self._t2))
        open_walks = [True, True]
        size_t1 = len(self._t1)  # T1's size once the victims so far are gone
        while len(victims) < wanted and (open_walks[0] or open_walks[1]):
            side = 0 if open_walks[0] and (size_t1 > self._p or not open_walks[1]) else 1
            block_id = next(walks[side], None)
            if block_id is None:
                open_walks[side] = False
            elif is_evictable(block_id):
                victims.append(block_id)
                size_t1 -= side == 0
            else:
                in_use[side].append(block_id)
        for block_id in in_use[0]:  # after the walk: an OrderedDict cannot change while iterated
            del self._t1[block_id]
            self._t2[block_id] = None
        for block_id in in_use[1]:
            self._t2.move_to_end(block_id)
        return victims

    def _c(self) -> int:
        return max(1, self._capacity)

    def _trim_ghosts(self) -> None:
        c = self._c()
        while self._b1 and len(self._t1) + len(self._b1) > c:
            self._b1.popitem(last=False)
        while len(self._t1) + len(self._t2) + len(self._b1) + len(self._b2) > 2 * c and (self._b2 or self._b1):
            (self._b2 or self._b1).popitem(last=False)

    def lists(self) -> dict[str, list[BlockId]]:
        """T1, T2, B1, B2 oldest first (tests, debugging)."""
        return {"t1": list(self._t1), "t2": list(self._t2), "b1": list(self._b1), "b2": list(self._b2)}

    def __contains__(self, block_id: object) -> bool:
        return block_id in self._t1 or block_id in self._t2

    def __len__(self) -> int:
        return len(self._t1) + len(self._t2)
