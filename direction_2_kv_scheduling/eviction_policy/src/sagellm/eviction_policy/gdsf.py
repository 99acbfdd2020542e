"""Greedy-Dual-Size-Frequency: keep what is often hit, expensive to recompute, and small."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple

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

    The segment's depth is that of its last block, from ``block_meta`` —
    the constructor argument, else the lookup of the latest
    ``EvictionContext`` (a cache passes the same one every time) — and at
    least its length - 1 (the fallback without metadata); its worth is
    known when its instant ends. Until then a hit block is ranked at a
    lower bound, the worth it already had (a key raise, O(1)), and a new
    block waits unranked. When a *hook* ends the instant (another ``now``),
    the hits are raised to their final keys, O(1) each, and the new blocks
    pushed, O(log n) each. When a *decision* ends it, the decision pushes
    the new blocks but leaves the hits at their lower bounds: a hit's key
    is raised only if its entry reaches the top of the heap
    (:meth:`LazyHeap.top`'s ``settle``), so a decision pays for the entries
    it meets, not for every block touched since the last one. Without
    timestamps (``now == 0``) every hook is its own segment.
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
        self._open: _Segment | None = None  # the segment of the latest instant, until it ends
        self._pending: dict[BlockId, _Pending] = {}  # ranked at a lower bound, worth not yet settled
        self._worth_of: dict[BlockId, float] = {}  # settled worth of each ranked block
        self._reference_bytes = 0
        self._settle_key = self._settle

    @property
    def name(self) -> str:
        return "gdsf"

    def worth(self, block_id: BlockId) -> float:
        """Cost / size of one hit of a ranked block (1.0 while its segment is still open)."""
        self._close_segment()
        return self._worth(block_id)

    def on_remove(self, block_id: BlockId) -> None:
        super().on_remove(block_id)
        self._pending.pop(block_id, None)
        self._worth_of.pop(block_id, None)
        if self._open is not None:
            self._open.unranked.pop(block_id, None)
            self._open.blocks.pop(block_id, None)

    def select_victims(self, context: EvictionContext) -> list[BlockId]:
        if context.block_meta is not None and not self._fixed_lookup:
            self._meta_lookup = context.block_meta
        self._close_segment()
        return super().select_victims(context)

    def _rank(self, block_id: BlockId, now: float, new: bool) -> None:
        segment = self._open
        if segment is None or now != segment.now or now == 0.0:
            self._close_segment(rank_now=True)
            segment = self._open = _Segment(now)
        segment.blocks[block_id] = None
        segment.blocks.move_to_end(block_id)
        order = self._touch.next(now)
        if new or block_id in segment.unranked:
            segment.unranked[block_id] = order  # pushed once the segment's worth is known
        else:  # a hit: raised now to a lower bound, O(1); to its final key when the segment ends
            pending = self._pending.get(block_id)
            if pending is None:
                worth = self._worth_of.get(block_id, 0.0)
            elif pending.segment is segment:
                worth = pending.worth  # touched again in the open segment
            else:
                worth = self._fold(block_id)  # the new key below exceeds the old one's final value
            hits, clock = self._hits[block_id], self._clock
            self._pending[block_id] = _Pending(clock, hits, worth, segment)
            self._heap.raise_key(block_id, clock + hits * worth, order)
        if now == 0.0:
            self._close_segment(rank_now=True)

    def _close_segment(self, rank_now: bool = False) -> None:
        """Settle the open segment's worth (the cost of its deepest block) and push its new blocks.

        A hook that ends the segment (``rank_now``) also raises its hit
        blocks' keys to their final values, O(1) each; a decision leaves them
        to :meth:`_settle`, which raises the ones whose entries surface — the
        decision pays a push per new block and nothing per hit.
        """
        segment = self._open
        if segment is None:
            return
        self._open = None
        worth = segment.worth = self._segment_worth(segment)
        clock, hits, worth_of, heap = self._clock, self._hits, self._worth_of, self._heap
        for block_id, order in segment.unranked.items():
            worth_of[block_id] = worth
            heap.push(block_id, clock + hits[block_id] * worth, order)
        if rank_now:
            self._rank_hits(segment)

    def _rank_hits(self, segment: _Segment) -> None:
        """Raise the ended segment's hit blocks from their lower bounds to their final keys: O(1) each."""
        pending_of = self._pending
        for block_id in segment.blocks:
            pending = pending_of.get(block_id)
            if pending is None or pending.segment is not segment:
                continue
            worth = self._fold(block_id)
            if worth > pending.worth:
                self._heap.raise_key(block_id, pending.clock + pending.hits * worth)

    def _settle(self, block_id: BlockId, key: float) -> float:
        """Final key of a block whose entry reached the top (``key`` is its current one)."""
        pending = self._pending.get(block_id)
        if pending is None or pending.segment.worth is None:
            return key
        return max(key, pending.clock + pending.hits * self._fold(block_id))

    def _settled_worth(self, block_id: BlockId) -> float:
        """The block's worth with every ended segment it was touched in; 0.0 if it has none."""
        worth = self._worth_of.get(block_id, 0.0)
        pending = self._pending.get(block_id)
        if pending is not None and pending.segment.worth is not None:
            return max(worth, pending.worth, pending.segment.worth)
        return worth

    def _fold(self, block_id: BlockId) -> float:
        """Keep the ended segment's worth as the block's own and drop its lower-bound record.

        The caller raises the block's key from the bound to its final value.
        """
        worth = self._worth_of[block_id] = self._settled_worth(block_id)
        del self._pending[block_id]
        return worth

    def _segment_worth(self, segment: _Segment) -> float:
        """Cost of the segment's deepest block — its last, as a chain is touched root to tail."""
        last = next(reversed(segment.blocks))
        meta = self._meta_lookup(last) if self._meta_lookup is not None else None
        depth = len(segment.blocks) - 1 if meta is None else max(len(segment.blocks) - 1, meta.prefix_depth)
        size = 1.0 if meta is None else self._size(meta)
        return (1.0 + self._depth_cost * depth) / size

    def _worth(self, block_id: BlockId) -> float:
        return self._settled_worth(block_id) or 1.0

    def _in_use_key(self, block_id: BlockId, context: EvictionContext) -> float:
        if block_id in self._pending:  # keyed afresh from its settled worth: no lower bound left
            self._fold(block_id)
        return super()._in_use_key(block_id, context)

    def _size(self, meta: KVBlockMeta) -> float:
        if meta.size_bytes <= 0:
            return 1.0
        if self._reference_bytes == 0:
            self._reference_bytes = meta.size_bytes
        return meta.size_bytes / self._reference_bytes


class _Segment:
    """The blocks touched in one instant, in touch order; ``worth`` is set when the instant ends."""

    __slots__ = ("blocks", "now", "unranked", "worth")

    def __init__(self, now: float) -> None:
        self.now = now
        self.blocks: OrderedDict[BlockId, None] = OrderedDict()
        self.unranked: dict[BlockId, int] = {}  # new blocks, not in the heap yet -> their touch order
        self.worth: float | None = None


class _Pending(NamedTuple):
    """A block ranked at ``clock + hits × worth`` before its segment's worth was known."""

    clock: float
    hits: int
    worth: float
    segment: _Segment
