"""The lower tiers of the KV pool, as the engine uses them: room per tier and blocking moves.

Core's :class:`~sagellm.core.protocols.KVPool` knows tiers only through
``can_allocate(n, tier)``, ``migrate(plan)`` and ``stats().tiers``; freeing a
block of a lower tier and reading a migration's destination ids are
extensions a tiered pool adds (``PagedKVPool`` has both). :class:`TieredKVPool`
names exactly those, so the builder can refuse a pool without them up front
instead of failing at the first preemption.

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
from typing import Protocol, runtime_checkable

from sagellm.core.errors import ConfigError
from sagellm.core.protocols import KVPool
from sagellm.core.types import BlockId, BlockMove, MigrationPlan, Tier


@runtime_checkable
class MigrationTicket(Protocol):
    """What a tiered pool's ``migrate`` returns: destination ids at once, the data after ``wait``."""

    @property
    def dst_block_ids(self) -> list[BlockId]: ...

    def wait(self, timeout: float | None = None) -> None: ...


@runtime_checkable
class TieredKVPool(Protocol):
    """The part of a tiered pool the engine uses beyond core's ``KVPool``."""

    @property
    def tiers(self) -> tuple[Tier, ...]: ...

    def free(self, block_ids: Sequence[BlockId], tier: Tier = Tier.DEVICE) -> None: ...

    def migrate(self, plan: MigrationPlan) -> MigrationTicket: ...


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
        present = tuple(getattr(pool, "tiers", (Tier.DEVICE,)))
        lower = tuple(tier for tier in present if tier is not Tier.DEVICE)
        if lower and not isinstance(pool, TieredKVPool):
            raise ConfigError(
                f"the '{type(pool).__name__}' pool reports tiers {[t.value for t in present]} but cannot "
                "free or migrate blocks in them (needs free(ids, tier) and migrate(plan).dst_block_ids)"
            )
        self._pool = pool
        self._counters = counters
        self.lower: tuple[Tier, ...] = lower
        self.bytes_per_block = pool.layout.bytes_per_block

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
        ticket = self._pool.migrate(plan)
        assert isinstance(ticket, MigrationTicket)  # TieredKVPool checked in __init__
        ticket.wait()
        self._counters.kv_migrations += 1
        self._counters.kv_migration_wait_seconds += time.perf_counter() - started
        return list(ticket.dst_block_ids)

    def free(self, block_ids: Sequence[BlockId], tier: Tier) -> None:
        pool = self._pool
        assert isinstance(pool, TieredKVPool)
        pool.free(block_ids, tier)
