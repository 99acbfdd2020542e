"""The tiers a pool has: for each, its bytes (a BlockStore) and its book-keeping (a BlockAllocator).

Block ids are per tier: device block 3 and host block 3 are different
blocks. Every public call that takes a tier goes through :meth:`TierSet.get`,
so an unknown or absent tier fails the same way everywhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sagellm.core.errors import NotSupportedError
from sagellm.core.types import Tier
from sagellm.kv_pool.block_allocator import BlockAllocator
from sagellm.kv_pool.block_store import BlockStore


@dataclass(slots=True)
class TierSlot:
    """One tier: its storage and its allocator."""

    store: BlockStore
    blocks: BlockAllocator


class TierSet:
    """Tiers fastest first; the device tier is always present."""

    def __init__(self, slots: dict[Tier, TierSlot]) -> None:
        self._slots = {tier: slots[tier] for tier in Tier if tier in slots}

    def get(self, tier: Tier | str) -> TierSlot:
        """The slot of ``tier``; NotSupportedError for a tier that is unknown or that this pool lacks."""
        resolved = coerce_tier(tier)
        try:
            return self._slots[resolved]
        except KeyError:
            raise NotSupportedError(
                f"this pool has no {resolved.value} tier (tiers: {', '.join(t.value for t in self._slots)}; "
                "size the others with the host_blocks / disk_blocks options)"
            ) from None

    def has(self, tier: Tier | str) -> bool:
        return coerce_tier(tier) in self._slots

    @property
    def tiers(self) -> tuple[Tier, ...]:
        return tuple(self._slots)

    def __iter__(self) -> Iterator[tuple[Tier, TierSlot]]:
        return iter(self._slots.items())


def coerce_tier(tier: Tier | str) -> Tier:
    """Accept a :class:`Tier` or its value (``"host"``); anything else is NotSupportedError."""
    if isinstance(tier, Tier):
        return tier
    try:
        return Tier(tier)
    except ValueError:
        known = ", ".join(t.value for t in Tier)
        raise NotSupportedError(f"unknown KV tier {tier!r} (known tiers: {known})") from None
