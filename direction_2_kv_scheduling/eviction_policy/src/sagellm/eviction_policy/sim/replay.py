"""Replay a trace through a simulated prefix cache of a fixed number of blocks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sagellm.core.errors import ConfigError, SageLLMError
from sagellm.core.protocols import EvictionPolicy
from sagellm.core.types import BlockId, EvictionContext, KVBlockMeta
from sagellm.eviction_policy.sim.belady import FutureAccesses
from sagellm.eviction_policy.sim.trace import Trace, TraceRequest


class PolicyContractError(SageLLMError):
    """A policy returned a victim that is not cached, in use, or repeated."""


@dataclass(frozen=True, slots=True)
class ReplayResult:
    policy: str
    capacity: int
    accesses: int
    hits: int
    evictions: int
    prefill_cost: float = 0.0  # recompute cost of every looked-up block (see PrefixCacheReplay)
    saved_cost: float = 0.0  # ... of the blocks served from the cache

    @property
    def hit_ratio(self) -> float:
        """Block hit ratio: looked-up blocks served from the cache / all looked-up blocks."""
        return self.hits / self.accesses if self.accesses else 0.0

    @property
    def saved_ratio(self) -> float:
        """Share of prefill compute the cache saved, deep blocks weighing more (GDSF's objective)."""
        return self.saved_cost / self.prefill_cost if self.prefill_cost else 0.0


class PrefixCacheReplay:
    """A prefix cache of ``capacity`` blocks whose evictions ``policy`` decides.

    Per request, as an engine does it::

        hash_ids   a  b  c  d  e        cached: a b d
                   hit  |miss: walk stops at the first miss
        hits: a b (on_access)   c, e: inserted (on_insert)   d: cached but
        unreachable behind c, counted as a miss and touched (on_access)

    If the missing blocks do not fit, the policy is asked once for the whole
    shortfall; every block of the running request is in use (pinned) while
    it is inserted. What still does not fit (a request larger than the
    cache) is not cached. Block ids are the trace's hash ids; metadata
    (``prefix_depth``) reaches the policy through ``EvictionContext.block_meta``.
    Victims are checked: a policy that names a block that is not cached, is
    pinned, or is named twice raises :class:`PolicyContractError`.

    Besides block hits it counts prefill compute saved: recomputing block
    ``d`` of a prompt costs ``1 + depth_cost × d`` (its projections plus
    attention over ``d`` blocks of prefix), the cost model of
    :class:`~sagellm.eviction_policy.GDSFEvictionPolicy`.
    """

    def __init__(
        self,
        policy: EvictionPolicy,
        capacity: int,
        depths: dict[int, int],
        future: FutureAccesses | None = None,
        depth_cost: float = 0.02,
    ) -> None:
        if capacity < 1:
            raise ConfigError(f"capacity must be >= 1 block, got {capacity}")
        self.policy, self.capacity, self._future = policy, capacity, future
        self._depths, self._depth_cost = depths, depth_cost
        self._meta: dict[BlockId, KVBlockMeta] = {}
        self._cached: set[int] = set()
        self.hits = self.accesses = self.evictions = 0
        self.prefill_cost = self.saved_cost = 0.0

    def run(self, trace: Trace, on_request: Callable[[], None] | None = None) -> ReplayResult:
        for request in trace.requests:
            self.serve(request)
            if on_request is not None:
                on_request()
        return ReplayResult(
            self.policy.name,
            self.capacity,
            self.accesses,
            self.hits,
            self.evictions,
            self.prefill_cost,
            self.saved_cost,
        )

    def serve(self, request: TraceRequest) -> None:
        ids, now, cached, policy = request.hash_ids, request.timestamp_s, self._cached, self.policy
        if self._future is not None:
            for block in ids:
                self._future.advance(block)
        matched = 0
        for block in ids:
            if block not in cached:
                break
            policy.on_access(block, now)
            matched += 1
        self.hits += matched
        self.accesses += len(ids)
        self.saved_cost += self._chain_cost(matched)
        self.prefill_cost += self._chain_cost(len(ids))
        rest = ids[matched:]
        missing = sum(1 for block in dict.fromkeys(rest) if block not in cached)
        shortfall = len(cached) + missing - self.capacity
        if shortfall > 0:
            self._evict(shortfall, frozenset(ids), now)
        room = self.capacity - len(cached)
        for block in rest:
            if block in cached:
                policy.on_access(block, now)
            elif room > 0:
                cached.add(block)
                policy.on_insert(block, now)
                room -= 1

    def _chain_cost(self, num_blocks: int) -> float:
        """Recompute cost of blocks 0..num_blocks-1 of one prompt: sum of 1 + depth_cost × d."""
        return num_blocks + self._depth_cost * num_blocks * (num_blocks - 1) / 2

    def _evict(self, shortfall: int, pinned: frozenset[int], now: float) -> None:
        context = EvictionContext(
            num_blocks=shortfall, now=now, is_evictable=lambda b: b not in pinned, block_meta=self._block_meta
        )
        victims = self.policy.select_victims(context)
        if len(set(victims)) != len(victims) or len(victims) > shortfall:
            raise PolicyContractError(f"{self.policy.name}: asked for {shortfall} victims, got {victims[:8]}...")
        for block in victims:
            if block not in self._cached or block in pinned:
                raise PolicyContractError(f"{self.policy.name}: victim {block} is not cached or is in use")
            self._cached.remove(block)
            self.policy.on_remove(block)
        self.evictions += len(victims)

    def _block_meta(self, block_id: BlockId) -> KVBlockMeta | None:
        meta = self._meta.get(block_id)
        if meta is None and block_id in self._depths:
            meta = self._meta[block_id] = KVBlockMeta(
                block_id=block_id, prefix_hash=block_id, prefix_depth=self._depths[block_id]
            )
        return meta
