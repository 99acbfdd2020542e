"""Policies that rank blocks by a priority key: evict the smallest key first.

LFU, GDSF and Belady differ only in how a block's key is computed; the walk
that turns a heap into victims is the same and lives here. A decision pops
the smallest keys until it has ``num_blocks`` evictable ones (the last one
it only looks at), then puts the victims back unchanged (a policy never
forgets a block before ``on_remove``) and re-keys the in-use blocks it met
(:meth:`_in_use_key`), so in-use blocks do not pile up at the top and get
re-scanned by every decision — the same reason LRU promotes them. Cost:
O((victims + in-use met) · log n), plus the lagging entries a decision
meets — few, as hooks tidy the top (:meth:`_tidy`). Equal keys go to the
older touch, and within one instant to the deeper block
(:class:`~sagellm.eviction_policy.instant_order.TouchOrder`).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable

from sagellm.core.types import BlockId, EvictionContext
from sagellm.eviction_policy.base import BaseEvictionPolicy
from sagellm.eviction_policy.instant_order import TouchOrder
from sagellm.eviction_policy.lazy_heap import Entry, LazyHeap


class HeapEvictionPolicy(BaseEvictionPolicy):
    """Smallest key first, over a :class:`LazyHeap`; subclasses say what a key is."""

    def __init__(self, tail_first: bool = True) -> None:
        self._heap = LazyHeap()
        self._touch = TouchOrder(tail_first)

    def _push(self, block_id: BlockId, key: float, now: float) -> None:
        """(Re-)rank a block touched at ``now`` to any key: O(log n)."""
        self._heap.push(block_id, key, self._touch.next(now))

    def _raise(self, block_id: BlockId, key: float, now: float) -> None:
        """Re-rank a tracked block touched at ``now`` to a key no smaller than its current one: O(1)."""
        self._heap.raise_key(block_id, key, self._touch.next(now))

    _settle_key: Callable[[BlockId, float], float] | None = None
    """A policy that ranks blocks by a lower bound first sets this (see :meth:`LazyHeap.top`)."""

    def _tidy(self) -> None:
        """Hooks call this: fix a few lagging entries at the top now, so a decision need not (:meth:`LazyHeap.tidy`)."""
        self._heap.tidy(self._settle_key)

    def select_victims(self, context: EvictionContext) -> list[BlockId]:
        wanted = context.num_blocks
        if wanted <= 0:
            return []
        heap, is_evictable, settle = self._heap, context.is_evictable, self._settle_key
        chosen: list[Entry] = []
        in_use: list[BlockId] = []
        last: Entry | None = None
        while True:
            entry = heap.top(settle)
            if entry is None:
                break
            if is_evictable(entry[2]):
                if len(chosen) + 1 == wanted:
                    last = entry  # the last victim stays where it is: no pop and push back
                    break
                chosen.append(entry)
            else:
                in_use.append(entry[2])
            heap.pop_top()
        for entry in chosen:
            heap.restore(entry)
        for block_id in in_use:
            self._push(block_id, self._in_use_key(block_id, context), context.now)
        if last is not None:
            chosen.append(last)
        if chosen:
            self._on_selected(chosen)
        return [entry[2] for entry in chosen]

    @abstractmethod
    def _in_use_key(self, block_id: BlockId, context: EvictionContext) -> float:
        """New key of a block the walk met in use (it is being used now)."""

    def _on_selected(self, chosen: list[Entry]) -> None:
        """Called with the entries a decision chose (e.g. to advance an aging clock)."""

    def on_remove(self, block_id: BlockId) -> None:
        self._heap.discard(block_id)

    def __contains__(self, block_id: object) -> bool:
        return block_id in self._heap

    def __len__(self) -> int:
        return len(self._heap)
