"""Greedy-Dual-Size-Frequency: keep what is often hit, expensive to recompute, and small."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from sagellm.core.errors import ConfigError
from sagellm.core.types import BlockId, EvictionContext, KVBlockMeta
from sagellm.eviction_policy.lfu import LFUEvictionPolicy

MetaLookup = Callable[[BlockId], KVBlockMeta | None]


class GDSFEvictionPolicy(LFUEvictionPolicy):
    """Evict the smallest ``clock + hits × cost / size`` (Cherkasova, 1998), cost from prefix depth.

    Recomputing a lost block means a prefill of its tokens against the whole
    prefix before it, so the cost of block ``d`` of a prompt grows with ``d``:
    ``cost(d) = 1 + depth_cost × d``. ``depth_cost`` is the attention share a
    block adds per block of context, about ``block_tokens / (6 × d_model)``
    (attention ≈ 4·L·d_model FLOPs per token against ≈ 24·d_model² for the
    projections and MLP): 0.02 for 512-token blocks at d_model 4096.
    ``size`` is a block's bytes relative to the first size seen (1 when the
    pool has one block size). The aging clock is LFU-DA's
    (:class:`LFUEvictionPolicy`).

    A prefix cache can only hit block ``d`` while blocks ``0..d-1`` are
    cached, so a deep block kept after its prefix went is dead weight. The
    cost is therefore taken per *chain segment*: the blocks touched in one
    instant (a prompt's blocks, root to tail, one ``now``) share the cost of
    the deepest of them, and ties inside the segment go tail first
    (:mod:`~sagellm.eviction_policy.instant_order`). A long prompt's prefix
    is kept or dropped from the tail, never hollowed out from the root::

        t=1: blocks a0..a9 (depths 0..9)  -> all worth cost(9) = 1.18
        t=2: blocks b0..b1 (depths 0..1)  -> all worth cost(1) = 1.02
        victims at equal hits: b1, b0, then a9, a8, ...

    A block keeps the largest worth of the segments it was touched in: a
    shared prefix hit by a short prompt still guards the long chains it
    leads to (an ancestor is worth at least its descendants).

    A segment is ranked when its instant ends (the next hook with another
    ``now``, or a decision): a heap push per new block (O(log n)), a key
    raise per hit block (O(1): clock, hits and worth only grow). The segment's depth is that of its last
    block, from ``block_meta`` — the constructor argument, else the lookup
    of the latest ``EvictionContext`` (a cache passes the same one every
    time) — and at least its length - 1 (the fallback without metadata).
    Without timestamps (``now == 0``) every hook is its own segment.
    """

    def __init__(
        self,
        depth_cost: float = 0.02,
        aging: bool = True,
        tail_first: bool = True,
        block_meta: MetaLookup | None = None,
    ) -> None:
        super().__init__(aging=aging, tail_first=tail_first)
        if depth_cost < 0:
            raise ConfigError(f"depth_cost must be >= 0, got {depth_cost}")
        self._depth_cost = depth_cost
        self._meta_lookup = block_meta
        self._fixed_lookup = block_meta is not None
        self._segment: OrderedDict[BlockId, None] = OrderedDict()  # blocks touched in the open instant
        self._segment_now = 0.0
        self._worth_of: dict[BlockId, float] = {}  # worth of each ranked block's segment
        self._reference_bytes = 0

    @property
    def name(self) -> str:
        return "gdsf"

    def worth(self, block_id: BlockId) -> float:
        """Cost / size of one hit of a ranked block (1.0 while its segment is still open)."""
        self._close_segment()
        return self._worth_of.get(block_id, 1.0)

    def on_remove(self, block_id: BlockId) -> None:
        super().on_remove(block_id)
        self._segment.pop(block_id, None)
        self._worth_of.pop(block_id, None)

    def select_victims(self, context: EvictionContext) -> list[BlockId]:
        if context.block_meta is not None and not self._fixed_lookup:
            self._meta_lookup = context.block_meta
        self._close_segment()
        return super().select_victims(context)

    def _rank(self, block_id: BlockId, now: float, new: bool) -> None:
        if now != self._segment_now or now == 0.0:
            self._close_segment()
            self._segment_now = now
        self._segment[block_id] = None  # ranked (again) when the segment closes
        self._segment.move_to_end(block_id)
        if now == 0.0:
            self._close_segment()

    def _close_segment(self) -> None:
        """Rank the open segment's blocks at the cost of its deepest block, tail first."""
        if not self._segment:
            return
        blocks = list(self._segment)
        self._segment.clear()
        worth = self._segment_worth(blocks)
        worth_of, hits, clock = self._worth_of, self._hits, self._clock
        keys = []
        for block_id in blocks:  # clock, hits and worth never fall, so a tracked block's key only rises
            block_worth = worth_of.get(block_id, 0.0)
            if block_worth < worth:
                block_worth = worth_of[block_id] = worth
            keys.append(clock + hits[block_id] * block_worth)
        self._rank_many(blocks, keys, self._segment_now)

    def _segment_worth(self, blocks: list[BlockId]) -> float:
        """Cost of the segment's deepest block — its last, as a chain is touched root to tail."""
        meta = self._meta_lookup(blocks[-1]) if self._meta_lookup is not None else None
        depth = len(blocks) - 1 if meta is None else max(len(blocks) - 1, meta.prefix_depth)
        size = 1.0 if meta is None else self._size(meta)
        return (1.0 + self._depth_cost * depth) / size

    def _worth(self, block_id: BlockId) -> float:
        return self._worth_of.get(block_id, 1.0)

    def _size(self, meta: KVBlockMeta) -> float:
        if meta.size_bytes <= 0:
            return 1.0
        if self._reference_bytes == 0:
            self._reference_bytes = meta.size_bytes
        return meta.size_bytes / self._reference_bytes
