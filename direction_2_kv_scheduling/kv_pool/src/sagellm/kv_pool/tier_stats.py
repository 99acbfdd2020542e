"""TierStats: per-tier occupancy and per-direction migration rates, without the device-only figures.

``stats()`` answers the protocol's question (how full is the device pool)
and carries the same tier data in ``KVPoolStats.tiers``/``migrations``;
``tier_stats()`` returns just the tier view, with look-ups by tier and by
direction, so an offload policy or a dashboard does not search tuples.
"""

from __future__ import annotations

from dataclasses import dataclass

from sagellm.core.errors import NotSupportedError
from sagellm.core.types import Tier
from sagellm.core.types.kv import MigrationRate, TierUsage


@dataclass(frozen=True, slots=True)
class TierStats:
    """A snapshot: blocks used/free in every tier the pool has (device first), and GB/s per direction so far."""

    tiers: tuple[TierUsage, ...]
    migrations: tuple[MigrationRate, ...] = ()

    def usage(self, tier: Tier) -> TierUsage:
        """Occupancy of ``tier``; NotSupportedError for a tier the pool does not have."""
        for usage in self.tiers:
            if usage.tier is tier:
                return usage
        raise NotSupportedError(f"this KV pool has no {Tier(tier).value} tier")

    def rate(self, src_tier: Tier, dst_tier: Tier) -> MigrationRate:
        """Blocks, bytes and GB/s moved from ``src_tier`` to ``dst_tier`` (all zero before the first move)."""
        for rate in self.migrations:
            if rate.src_tier is src_tier and rate.dst_tier is dst_tier:
                return rate
        return MigrationRate(src_tier, dst_tier, 0, 0, 0.0)

    def gb_per_s(self) -> dict[str, float]:
        """``{"device->host": GB/s, ...}`` for every direction migrated so far (handy for logs and JSON)."""
        return {f"{r.src_tier.value}->{r.dst_tier.value}": r.gb_per_s for r in self.migrations}
