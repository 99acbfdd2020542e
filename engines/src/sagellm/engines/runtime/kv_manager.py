"""Coordinates the KV pool, the prefix index and the eviction policy.

The three are separate modules behind core Protocols; this class is the
only place that knows how their reference counts fit together:

* a sequence holds one pool reference on each block in its table;
* the prefix index holds one more pool reference on each block it caches,
  and counts the sequences using it (index references);
* a cached block nobody uses is *evictable*: it still occupies the pool,
  but the scheduler may count it as free, because ``ensure_free`` can drop
  it from the index (and its last pool reference with it) on demand.
"""

from __future__ import annotations

import math
import time

from sagellm.core.errors import OutOfBlocksError
from sagellm.core.protocols import EvictionPolicy, KVPool, PrefixIndex
from sagellm.core.types import BlockId, EvictionContext, KVBlockMeta, SequenceState


class KVManager:
    def __init__(self, pool: KVPool, index: PrefixIndex | None, policy: EvictionPolicy | None) -> None:
        self.pool = pool
        self.index = index
        self.policy = policy
        self.block_size = pool.layout.block_size
        self._evictable: set[BlockId] = set()
        self._cached_by_seq: dict[str, list[BlockId]] = {}  # blocks a sequence holds index refs on
        self._registered: dict[str, int] = {}  # full blocks already offered to the index
        self._meta: dict[BlockId, KVBlockMeta] = {}  # cached blocks, for cost-aware policies (depth, age, hits)
        self.num_evictions = 0
        self.num_hit_tokens = 0
        self.num_queried_tokens = 0

    @property
    def num_free_blocks(self) -> int:
        """Free plus evictable: what the scheduler may plan with."""
        return self.pool.num_free_blocks + len(self._evictable)

    @property
    def prefix_caching(self) -> bool:
        return self.index is not None

    def peek_cached_tokens(self, seq: SequenceState) -> int:
        if self.index is None:
            return 0
        return self.index.peek(self._lookup_tokens(seq), seq.request.namespace)

    def admit(self, seq: SequenceState) -> None:
        """Attach the cached prefix to a waiting sequence (no allocation yet)."""
        seq.num_cached_tokens = 0
        if self.index is None:
            return
        tokens = self._lookup_tokens(seq)
        hit = self.index.lookup(tokens, seq.request.namespace)
        self.num_queried_tokens += len(tokens)
        self.num_hit_tokens += hit.num_matched_tokens
        blocks = list(hit.block_ids)
        self.pool.retain(blocks)
        self._evictable.difference_update(blocks)
        now = time.monotonic()
        for block in blocks:
            self._policy_access(block, now)
            self._touch(block, now)
        seq.block_ids = blocks
        seq.num_computed_tokens = seq.num_cached_tokens = hit.num_matched_tokens
        self._cached_by_seq[seq.request_id] = list(blocks)
        self._registered[seq.request_id] = len(blocks)

    def allocate_for(self, seq: SequenceState, num_tokens: int) -> None:
        """Grow the block table to hold ``num_tokens`` KV slots; raise OutOfBlocksError if impossible."""
        needed = math.ceil(num_tokens / self.block_size) - len(seq.block_ids)
        if needed <= 0:
            self._unshare_tail(seq)
            return
        self.ensure_free(needed)
        self._unshare_tail(seq)
        seq.block_ids.extend(self.pool.allocate(needed))

    def ensure_free(self, num_blocks: int) -> None:
        shortfall = num_blocks - self.pool.num_free_blocks
        if shortfall <= 0:
            return
        if shortfall > len(self._evictable) or self.index is None or self.policy is None:
            raise OutOfBlocksError(
                f"need {num_blocks} KV blocks, {self.pool.num_free_blocks} free and {len(self._evictable)} evictable"
            )
        victims = self.policy.select_victims(
            EvictionContext(
                num_blocks=shortfall,
                now=time.monotonic(),
                is_evictable=self._evictable.__contains__,
                block_meta=self._meta.get,
            )
        )
        self._drop_cached(victims)
        if self.pool.num_free_blocks < num_blocks:
            raise OutOfBlocksError(f"eviction freed too little: need {num_blocks}, have {self.pool.num_free_blocks}")

    def register_computed(self, seq: SequenceState) -> None:
        """Offer newly completed full blocks of computed KV to the prefix index."""
        if self.index is None:
            return
        num_full = seq.num_computed_tokens // self.block_size
        if num_full <= self._registered.get(seq.request_id, 0):
            return
        tokens = seq.token_ids[: num_full * self.block_size]
        adopted = self.index.insert(tokens, seq.block_ids[:num_full], seq.request.namespace)
        self.pool.retain(adopted)  # the index's own reference
        now = time.monotonic()
        depth = {block: position for position, block in enumerate(seq.block_ids[:num_full])}
        size = self.pool.layout.bytes_per_block
        for block in adopted:
            self._meta[block] = KVBlockMeta(
                block, size_bytes=size, created_at=now, last_access=now, prefix_depth=depth[block]
            )
        if self.policy is not None:
            for block in adopted:
                self.policy.on_insert(block, now)
        self._cached_by_seq.setdefault(seq.request_id, []).extend(adopted)
        self._registered[seq.request_id] = num_full

    def release(self, seq: SequenceState) -> None:
        """Give back everything a finished, aborted or preempted sequence holds."""
        cached = self._cached_by_seq.pop(seq.request_id, [])
        self._registered.pop(seq.request_id, None)
        if self.index is not None and cached:
            self.index.release(cached)
            self._evictable.update(b for b in cached if self.index.is_evictable(b))
        self.pool.free(seq.block_ids)
        seq.block_ids = []
        seq.num_computed_tokens = 0

    def hit_rate(self) -> float:
        return self.num_hit_tokens / self.num_queried_tokens if self.num_queried_tokens else 0.0

    def _drop_cached(self, victims: list[BlockId]) -> None:
        assert self.index is not None
        self.index.remove(victims)
        for block in victims:
            self._evictable.discard(block)
            self._meta.pop(block, None)
            if self.policy is not None:
                self.policy.on_remove(block)
        self.pool.free(victims)
        self.num_evictions += len(victims)

    def _touch(self, block: BlockId, now: float) -> None:
        meta = self._meta.get(block)
        if meta is not None:
            meta.last_access = now
            meta.access_count += 1

    def _policy_access(self, block: BlockId, now: float) -> None:
        if self.policy is not None:
            self.policy.on_access(block, now)

    def _lookup_tokens(self, seq: SequenceState) -> list[int]:
        """All but the last token: at least one token must run to produce logits."""
        return seq.token_ids[: seq.num_tokens - 1]

    def _unshare_tail(self, seq: SequenceState) -> None:
        """The next token is written into the last block; it must be private."""
        if seq.num_computed_tokens % self.block_size == 0 or not seq.block_ids:
            return
        index = seq.num_computed_tokens // self.block_size
        if index < len(seq.block_ids) and self.pool.ref_count(seq.block_ids[index]) > 1:
            seq.block_ids[index] = self.pool.copy_on_write(seq.block_ids[index])
