"""Evict the block a lifetime predictor expects to be reused last: Belady with a learned future."""

from __future__ import annotations

import math

from sagellm.core.protocols import LifetimePredictor
from sagellm.core.types import BlockId, EvictionContext, KVBlockMeta
from sagellm.eviction_policy.base import BaseEvictionPolicy
from sagellm.eviction_policy.lazy_heap import Entry, LazyHeap
from sagellm.eviction_policy.reuse_predictor import ReuseIntervalPredictor


class LearnedEvictionPolicy(BaseEvictionPolicy):
    """Ranks blocks by ``last touch + predictor.predict(meta)``: the predicted instant of next reuse.

    Belady's optimum evicts the block reused farthest in the future; this
    policy asks a :class:`sagellm.core.protocols.LifetimePredictor` for that
    future. A prediction is made when a block is touched (insert, hit) and
    turned into an absolute instant, so it stays comparable as time passes
    and nothing is re-predicted per decision. The predictor also learns
    online: each hit reports ``observe(meta, reused_after=gap)``, each
    removal ``observe(meta, None)`` (evicted unused since its last touch).

    Predictions can be wrong the other way too: a block expected back in
    1 s and still unused 10 s later would otherwise sit at the safe end
    forever. So a decision first takes *overdue* blocks — unused for
    ``overdue_factor`` × their predicted time past the predicted instant —
    oldest deadline first, then the farthest predicted reuse::

        far heap  (max predicted reuse):   inf  inf  130.0  95.5 ...
        deadlines (min, before now=40):    12.0 -> overdue: evicted first

    Two :class:`LazyHeap` s keep both orders: O(log n) per hook and victim.
    ``predictor`` is any object with the core protocol (engines pass one
    through ``create_eviction_policy(config, predictor=...)``); without one
    the package's :class:`ReuseIntervalPredictor` is used. The metadata the
    predictor sees is the policy's own record (created_at, last_access,
    access_count = hits since insert); it is mutated after each call, so a
    predictor must copy what it wants to keep.
    """

    def __init__(self, predictor: LifetimePredictor | None = None, overdue_factor: float = 1.0) -> None:
        if overdue_factor < 0:
            raise ValueError(f"overdue_factor must be >= 0, got {overdue_factor}")
        if predictor is not None and not isinstance(predictor, LifetimePredictor):
            raise TypeError(f"predictor must implement LifetimePredictor, got {type(predictor).__name__}")
        self._predictor: LifetimePredictor = predictor if predictor is not None else ReuseIntervalPredictor()
        self._overdue_factor = overdue_factor
        self._meta: dict[BlockId, KVBlockMeta] = {}
        self._far = LazyHeap()  # key: -(predicted reuse instant)
        self._deadline = LazyHeap()  # key: instant after which the block counts as overdue

    @property
    def name(self) -> str:
        return "learned"

    @property
    def predictor(self) -> LifetimePredictor:
        return self._predictor

    def predicted_reuse(self, block_id: BlockId) -> float | None:
        """Predicted instant of the next reuse of a tracked block (``inf``: never), else ``None``."""
        key = self._far.key(block_id)
        return None if key is None else -key

    def on_insert(self, block_id: BlockId, now: float = 0.0) -> None:
        if block_id in self._meta:
            self.on_access(block_id, now)
            return
        meta = self._meta[block_id] = KVBlockMeta(block_id=block_id, created_at=now, last_access=now)
        self._rank(block_id, meta, now)

    def on_access(self, block_id: BlockId, now: float = 0.0) -> None:
        meta = self._meta.get(block_id)
        if meta is None:
            return
        self._predictor.observe(meta, now - meta.last_access)
        meta.access_count += 1
        meta.last_access = now
        self._rank(block_id, meta, now)

    def on_remove(self, block_id: BlockId) -> None:
        meta = self._meta.pop(block_id, None)
        if meta is None:
            return
        self._far.discard(block_id)
        self._deadline.discard(block_id)
        self._predictor.observe(meta, None)

    def select_victims(self, context: EvictionContext) -> list[BlockId]:
        wanted = context.num_blocks
        if wanted <= 0:
            return []
        chosen: dict[BlockId, None] = {}
        in_use: dict[BlockId, None] = {}
        popped: list[tuple[LazyHeap, Entry]] = []
        self._walk(self._deadline, context, chosen, in_use, popped, until=context.now)
        self._walk(self._far, context, chosen, in_use, popped, until=math.inf)
        for heap, entry in popped:
            if entry[2] not in in_use:
                heap.restore(entry)
        for block_id in in_use:  # in use means used now: it is as fresh as a hit
            self._meta[block_id].last_access = context.now
            self._rank(block_id, self._meta[block_id], context.now)
        return list(chosen)

    def _walk(
        self,
        heap: LazyHeap,
        context: EvictionContext,
        chosen: dict[BlockId, None],
        in_use: dict[BlockId, None],
        popped: list[tuple[LazyHeap, Entry]],
        until: float,
    ) -> None:
        """Pop ``heap`` while its keys are below ``until``, collecting evictable blocks into ``chosen``."""
        while len(chosen) < context.num_blocks:
            key = heap.peek_key()
            if key is None or key >= until:
                return
            entry = heap.pop()
            assert entry is not None
            popped.append((heap, entry))
            block_id = entry[2]
            if block_id in chosen or block_id in in_use:
                continue
            if context.is_evictable(block_id):
                chosen[block_id] = None
            else:
                in_use[block_id] = None

    def _rank(self, block_id: BlockId, meta: KVBlockMeta, now: float) -> None:
        ttl = self._predictor.predict(meta, now)
        if not ttl >= 0:  # negative or NaN: the predictor has no idea; treat as "soon"
            ttl = 0.0
        self._far.push(block_id, -(now + ttl))
        self._deadline.push(block_id, now + (1.0 + self._overdue_factor) * ttl)

    def __contains__(self, block_id: object) -> bool:
        return block_id in self._meta

    def __len__(self) -> int:
        return len(self._meta)
