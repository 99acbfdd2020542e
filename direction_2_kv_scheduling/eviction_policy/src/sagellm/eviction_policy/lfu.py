"""Least frequently used with dynamic aging (LFU-DA): hot blocks win, but not forever."""

from __future__ import annotations

from sagellm.core.types import BlockId, EvictionContext
from sagellm.eviction_policy.heap_policy import HeapEvictionPolicy
from sagellm.eviction_policy.lazy_heap import Entry


class LFUEvictionPolicy(HeapEvictionPolicy):
    """Evict the block with the smallest ``clock + hits × worth``; ties go to the least recently touched.

    Plain LFU never lets go of a block that was hot once: its count stays
    ahead of every newcomer's. Dynamic aging (Arlitt et al., 2000) fixes that
    without touching old entries: a global ``clock`` rises to the key of each
    victim, and a block's key is computed against the clock of its last
    touch. New and recently hit blocks start from today's clock, so a block
    whose hits all lie in the past sinks below them::

        clock 0: A hit 10x -> key 10          clock 12 (after evictions):
                 B new     -> key 1           C new -> key 13 > A's 10: A goes first

    ``aging=False`` keeps the clock at 0 (plain LFU, for comparison). Equal
    keys go oldest touch first; blocks touched in one instant tail first
    (``tail_first``, see :mod:`~sagellm.eviction_policy.instant_order`).
    ``worth`` is 1 per hit here; GDSF weighs hits by recompute cost / size.
    Inserts and victims are O(log n) on a :class:`LazyHeap`; a hit raises
    the key in O(1) (it only rises, so the heap entry is fixed when it
    surfaces). Every hook then tidies the top of the heap a little
    (:meth:`LazyHeap.tidy`, up to three entries), so the entries that
    surface between decisions are fixed by hooks and a decision starts
    from an up-to-date top.
    """

    def __init__(self, aging: bool = True, tail_first: bool = True) -> None:
        super().__init__(tail_first)
        self._hits: dict[BlockId, int] = {}
        self._clock = 0.0
        self._aging = aging

    @property
    def name(self) -> str:
        return "lfu"

    @property
    def clock(self) -> float:
        """The aging clock: the largest key evicted so far (0 without aging)."""
        return self._clock

    def on_insert(self, block_id: BlockId, now: float = 0.0) -> None:
        if block_id in self._hits:
            self.on_access(block_id, now)
            return
        self._hits[block_id] = 1
        self._rank(block_id, now, new=True)
        self._tidy()

    def on_access(self, block_id: BlockId, now: float = 0.0) -> None:
        hits = self._hits.get(block_id)
        if hits is None:
            return  # never announced: not ours to rank
        self._hits[block_id] = hits + 1
        self._rank(block_id, now, new=False)
        self._tidy()

    def on_remove(self, block_id: BlockId) -> None:
        super().on_remove(block_id)
        self._hits.pop(block_id, None)

    def frequency(self, block_id: BlockId) -> int:
        """Hits counted for a tracked block (insert counts as the first); 0 if untracked."""
        return self._hits.get(block_id, 0)

    def __contains__(self, block_id: object) -> bool:
        return block_id in self._hits

    def __len__(self) -> int:
        return len(self._hits)

    def _worth(self, block_id: BlockId) -> float:
        """Value of one hit of ``block_id``."""
        return 1.0

    def _rank(self, block_id: BlockId, now: float, new: bool) -> None:
        """Key of a block just inserted or hit; a hit only raises it (clock and count never fall): O(1)."""
        key = self._clock + self._hits[block_id] * self._worth(block_id)
        if new:
            self._push(block_id, key, now)
        else:
            self._raise(block_id, key, now)

    def _in_use_key(self, block_id: BlockId, context: EvictionContext) -> float:
        # In use means used now: re-base on today's clock, like a hit that adds no count.
        return self._clock + self._hits[block_id] * self._worth(block_id)

    def _on_selected(self, chosen: list[Entry]) -> None:
        if self._aging and chosen:
            self._clock = max(self._clock, max(entry[0] for entry in chosen))
