"""The lower tiers of the KV pool, as the engine uses them: room per tier and blocking moves.

A pool takes part in tiering through core's
:class:`~sagellm.core.protocols.TieredKVPool` (free in any tier, migrate
with destination ids); any other pool is treated as device-only, and one
that reports lower tiers in ``stats()`` without that protocol is refused up
front instead of failing at the first preemption.

Every move here *waits* for its copy. The engine needs the result in the same
step each time: a swap-out or demotion frees device blocks that the step is
about to allocate, and a swap-in or promotion must land before attention
reads it. The copies themselves run on the pool's workers (a CUDA copy
stream on GPUs), so batching a step's moves into one plan is what saves
time, not returning early.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, fields

from sagellm.core.errors import ConfigError
from sagellm.core.protocols import KVPool, TieredKVPool
from sagellm.core.types import BlockId, BlockMove, MigrationPlan, Tier


@dataclass(slots=True)
class TierCounters:
    """What the tiers did, for the engine's metrics (each field is a ``<name>_total`` counter)."""

    swap_out: int = 0  # sequences preempted by moving their private KV to the host tier
    swap_out_blocks: int = 0
    swap_out_bytes: int = 0
    swap_in: int = 0  # swapped-out sequences resumed with their KV moved back
    swap_in_blocks: int = 0
    swap_in_bytes: int = 0
    swap_discarded_blocks: int = 0  # swapped blocks freed unused (their prefix left the cache meanwhile)
    kv_demoted_blocks: int = 0  # cached prefix blocks moved down a tier instead of dropped
    kv_promoted_blocks: int = 0  # demoted prefix blocks moved back to the device on a hit
    kv_promotion_missed_blocks: int = 0  # lower-tier hit blocks treated as misses (no device room)
    kv_lower_dropped_blocks: int = 0  # demoted blocks dropped from a full lowest tier
    kv_migrations: int = 0  # migration plans submitted (each waited for)
    kv_migration_wait_seconds: float = 0.0  # time the engine spent waiting for them

    def items(self) -> list[tuple[str, float]]:
        return [(f.name, getattr(self, f.name)) for f in fields(self)]


class KVTiers:
    """The pool's tiers below the device (host, disk: fastest first) and blocking moves between tiers."""

    def __init__(self, pool: KVPool, counters: TierCounters) -> None:
        self._tiered: TieredKVPool | None = pool if isinstance(pool, TieredKVPool) else None
        lower = tuple(tier for tier in self._present(pool) if tier is not Tier.DEVICE)
        self._pool = pool
        self._counters = counters
        self.lower: tuple[Tier, ...] = lower
        self.bytes_per_block = pool.layout.bytes_per_block

    def _present(self, pool: KVPool) -> tuple[Tier, ...]:
        if self._tiered is not None:
            return self._tiered.tiers
        reported = tuple(usage.tier for usage in pool.stats().tiers)
        if any(tier is not Tier.DEVICE for tier in reported):
            raise ConfigError(
                f"the '{type(pool).__name__}' pool reports tiers {[t.value for t in reported]} but is not a "
                "TieredKVPool (needs tiers, free(ids, tier) and migrate(plan) -> MigrationTicket)"
            )
        return (Tier.DEVICE,)

    def _tiered_pool(self) -> TieredKVPool:
        assert self._tiered is not None, "lower-tier move on a device-only pool"  # callers check has(tier)
        return self._tiered

    def has(self, tier: Tier) -> bool:
        return tier in self.lower

    def below(self, tier: Tier) -> Tier | None:
        """The next slower tier this pool has, or None at the bottom."""
        order = list(Tier)
        return next((t for t in self.lower if order.index(t) > order.index(tier)), None)

    def num_free(self, tier: Tier) -> int:
        for usage in self._pool.stats().tiers:
            if usage.tier is tier:
                return usage.num_free_blocks
        return 0

    def move(self, block_ids: Sequence[BlockId], src: Tier, dst: Tier) -> list[BlockId]:
        """Move blocks (one reference each) from ``src`` to ``dst``; their new ids there, in order."""
        return self.move_mixed([(block_id, src) for block_id in block_ids], dst)

    def move_mixed(self, sources: Sequence[tuple[BlockId, Tier]], dst: Tier) -> list[BlockId]:
        """Move blocks from possibly different tiers to ``dst`` in one plan (one wait)."""
        if not sources:
            return []
        plan = MigrationPlan(tuple(BlockMove(block_id, src, dst) for block_id, src in sources))
        started = time.perf_counter()
        ticket = self._tiered_pool().migrate(plan)
        ticket.wait()
        self._counters.kv_migrations += 1
        self._counters.kv_migration_wait_seconds += time.perf_counter() - started
        return list(ticket.dst_block_ids)

    def free(self, block_ids: Sequence[BlockId], tier: Tier) -> None:
        self._tiered_pool().free(block_ids, tier)
