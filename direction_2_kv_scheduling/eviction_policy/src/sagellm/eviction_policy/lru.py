"""Least recently used: evict the block whose last hook call is oldest."""

from __future__ import annotations

from collections import OrderedDict

from sagellm.core.types import BlockId, EvictionContext
from sagellm.eviction_policy.base import BaseEvictionPolicy
from sagellm.eviction_policy.instant_order import InstantBatch


class LRUEvictionPolicy(BaseEvictionPolicy):
    """Recency order in an ``OrderedDict``: every hook and decision is O(1) per block touched.

    ``on_insert`` / ``on_access`` move a block to the most recently used end;
    ``select_victims`` walks from the least recently used end and returns the
    first ``num_blocks`` blocks ``context.is_evictable`` accepts, oldest first.
    It removes nothing: the cache removes the victims and calls ``on_remove``.
    Recency is hook-call order, not ``now``: equal or skewed clocks cannot
    reorder blocks, and no timestamp is stored::

        LRU end                                         MRU end
        [ 7 ][ 3* ][ 9 ][ 4 ][ 3' ] ...         * in use: skipped
        select_victims(num_blocks=2) -> [7, 9]; 3 moves to the MRU end

    Why in-use blocks move to the MRU end when a walk skips them
    (``promote_in_use=True``, the default): a block a running sequence holds
    is, by definition, in use now, so it is not a good victim when it is
    released either. vLLM gets the same effect by queueing a block for
    eviction only when its last user frees it. Without the move, long-held
    blocks gather at the LRU end and every decision re-scans them, so a
    decision costs O(in-use blocks) instead of O(victims).

    ``tail_first=True`` ranks the blocks touched at one ``now`` in reverse
    call order (:mod:`~sagellm.eviction_policy.instant_order`); off by
    default, so ``lru`` stays the plain call-order baseline the other
    policies are measured against.
    """

    def __init__(self, promote_in_use: bool = True, tail_first: bool = False) -> None:
        self._order: OrderedDict[BlockId, None] = OrderedDict()
        self._promote_in_use = promote_in_use
        self._batch = InstantBatch() if tail_first else None

    @property
    def name(self) -> str:
        return "lru"

    def on_insert(self, block_id: BlockId, now: float = 0.0) -> None:
        # A membership test, not try/except: inserted blocks are usually new, and a raised
        # KeyError would cost twice the whole hook.
        if self._batch is not None:
            self._batch.touch(self._order, block_id, now)
        elif block_id in self._order:
            self._order.move_to_end(block_id)
        else:
            self._order[block_id] = None

    def on_access(self, block_id: BlockId, now: float = 0.0) -> None:
        """Refresh a tracked block; an untracked id is ignored (the cache never announced it)."""
        if self._batch is not None:
            if block_id in self._order:
                self._batch.touch(self._order, block_id, now)
            return
        try:  # noqa: SIM105 - try is free in 3.11 when nothing is raised; contextlib.suppress is not
            self._order.move_to_end(block_id)
        except KeyError:
            pass

    def on_remove(self, block_id: BlockId) -> None:
        self._order.pop(block_id, None)

    def select_victims(self, context: EvictionContext) -> list[BlockId]:
        wanted = context.num_blocks
        if wanted <= 0:
            return []
        if self._batch is not None:
            self._batch.flush()
        is_evictable = context.is_evictable
        victims: list[BlockId] = []
        in_use: list[BlockId] = []
        take, skip = victims.append, in_use.append  # hot loop: bind once
        for block_id in self._order:
            if is_evictable(block_id):
                take(block_id)
                if len(victims) == wanted:
                    break
            else:
                skip(block_id)
        if self._promote_in_use:
            for block_id in in_use:  # after the walk: an OrderedDict cannot change while iterated
                self._order.move_to_end(block_id)
        return victims

    def recency_order(self) -> list[BlockId]:
        """Tracked blocks from least to most recently used (tests, debugging)."""
        return list(self._order)

    def __contains__(self, block_id: object) -> bool:
        return block_id in self._order

    def __len__(self) -> int:
        return len(self._order)
