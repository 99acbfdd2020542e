"""Greedy-Dual-Size-Frequency: keep what is often hit, expensive to recompute, and small."""

from __future__ import annotations

from sagellm.core.types import BlockId, EvictionContext, KVBlockMeta
from sagellm.eviction_policy.lazy_heap import Entry
from sagellm.eviction_policy.lfu import LFUEvictionPolicy


class GDSFEvictionPolicy(LFUEvictionPolicy):
    """Evict the smallest ``clock + hits × cost / size`` (Cherkasova, 1998), cost from prefix depth.

    Recomputing a lost block means a prefill of its tokens against the whole
    prefix before it, so its cost grows with its depth in the token chain:
    ``cost = 1 + depth_cost × prefix_depth``. ``depth_cost`` is the attention
    share a block adds per block of context: about ``block_tokens /
    (6 × d_model)`` for a standard transformer (attention ≈ 4·L·d FLOPs per
    token against ≈ 24·d² for the projections and MLP). ``size`` is the block's
    bytes relative to the first size seen (1 when the pool has one block size).

    Hooks carry no metadata, only ``EvictionContext.block_meta`` does, so a
    block enters the heap with the cost of depth 0, a lower bound. When a
    decision pops a block whose cost is still provisional it asks
    ``block_meta`` once, stores the true cost and pushes the block back at
    its true key; a popped block with a known cost is therefore a true
    minimum (with one block size, every provisional key is a lower bound).
    Without ``block_meta`` (or when it returns ``None``) every cost stays 1:
    GDSF degrades to LFU with dynamic aging. The aging clock works as in
    :class:`LFUEvictionPolicy`.
    """

    def __init__(self, depth_cost: float = 0.02, aging: bool = True, tail_first: bool = True) -> None:
        super().__init__(aging=aging, tail_first=tail_first)
        if depth_cost < 0:
            raise ValueError(f"depth_cost must be >= 0, got {depth_cost}")
        self._depth_cost = depth_cost
        self._worth_of: dict[BlockId, float] = {}  # settled cost / size; absent: provisional 1.0
        self._reference_bytes = 0

    @property
    def name(self) -> str:
        return "gdsf"

    def worth(self, block_id: BlockId) -> float:
        """Cost / size of one hit of ``block_id`` as known now (1.0 until its metadata was read)."""
        return self._worth(block_id)

    def on_remove(self, block_id: BlockId) -> None:
        super().on_remove(block_id)
        self._worth_of.pop(block_id, None)

    def _worth(self, block_id: BlockId) -> float:
        return self._worth_of.get(block_id, 1.0)

    def _settle(self, entry: Entry, context: EvictionContext) -> float | None:
        block_id = entry[2]
        if context.block_meta is None or block_id in self._worth_of:
            return None
        meta = context.block_meta(block_id)
        if meta is None:
            return None
        worth = self._worth_of[block_id] = self._cost(meta) / self._size(meta)
        if worth == 1.0:
            return None
        return entry[0] + self._hits[block_id] * (worth - 1.0)  # the key's clock part is kept

    def _cost(self, meta: KVBlockMeta) -> float:
        return 1.0 + self._depth_cost * max(0, meta.prefix_depth)

    def _size(self, meta: KVBlockMeta) -> float:
        if meta.size_bytes <= 0:
            return 1.0
        if self._reference_bytes == 0:
            self._reference_bytes = meta.size_bytes
        return meta.size_bytes / self._reference_bytes
