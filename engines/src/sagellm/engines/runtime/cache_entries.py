"""Where each prefix-cache entry's KV lives now: the device, or a lower tier after demotion.

The prefix index maps token blocks to *ids* and hands them back on a hit.
With one tier those ids could simply be device block ids. With lower tiers
they cannot: a demoted block leaves the device, its device id is recycled
for another sequence, and that sequence's block may be cached too -- two
index entries would then claim one id. Nor can the index rename an entry
(no such call in the ``PrefixIndex`` protocol), and removing and
re-inserting it would need the whole token chain above it and would orphan
its descendants for a moment.

So the index holds **entry ids** of its own, minted here and never reused,
and this directory maps each to its current ``(tier, block id)``::

    index:      tokens[0:16] -> e7     tokens[16:32] -> e8
    directory:  e7 -> (device, 12)     e8 -> (host, 3)      demoted; device 13 went to someone else
    device map: 12 -> e7                                    which device blocks are entries

A demotion or promotion changes one directory row; the index, the eviction
policy (which ranks entry ids) and every sequence holding an index reference
are untouched. The cost is a dict look-up per block on hit and insert.
Demoted entries are also kept per tier in demotion order, oldest first, so
a full tier can push its oldest down a tier, or drop them at the bottom.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Iterator

from sagellm.core.types import BlockId, Tier

EntryId = int
"""An id the prefix index knows a cached block by (not a pool block id)."""


class CacheEntries:
    """Entry id -> (tier, block id), with the reverse map for device blocks and per-tier demotion order."""

    def __init__(self) -> None:
        self._ids = itertools.count()
        self._home: dict[EntryId, tuple[Tier, BlockId]] = {}
        self._on_device: dict[BlockId, EntryId] = {}
        self._lower: dict[Tier, OrderedDict[EntryId, None]] = {}

    def __len__(self) -> int:
        return len(self._home)

    def mint(self) -> EntryId:
        """A fresh id to offer the index for a block it may adopt (unused ids are simply dropped)."""
        return next(self._ids)

    def add(self, entry: EntryId, device_block: BlockId) -> None:
        """The index adopted ``device_block`` under ``entry``."""
        self._home[entry] = (Tier.DEVICE, device_block)
        self._on_device[device_block] = entry

    def entry_at(self, device_block: BlockId) -> EntryId | None:
        """The entry a device block belongs to; None for a block only its sequence holds."""
        return self._on_device.get(device_block)

    def location(self, entry: EntryId) -> tuple[Tier, BlockId]:
        return self._home[entry]

    def device_block(self, entry: EntryId) -> BlockId | None:
        tier, block = self._home[entry]
        return block if tier is Tier.DEVICE else None

    def relocate(self, entry: EntryId, tier: Tier, block: BlockId) -> None:
        """The entry's KV moved to ``block`` of ``tier`` (a demotion, a promotion or a push down)."""
        old_tier, old_block = self._home[entry]
        if old_tier is Tier.DEVICE:
            del self._on_device[old_block]
        else:
            del self._lower[old_tier][entry]
        self._home[entry] = (tier, block)
        if tier is Tier.DEVICE:
            self._on_device[block] = entry
        else:
            self._lower.setdefault(tier, OrderedDict())[entry] = None

    def forget(self, entry: EntryId) -> tuple[Tier, BlockId]:
        """Drop the entry (the index removed it); where its block was, for the caller to free."""
        tier, block = self._home.pop(entry)
        if tier is Tier.DEVICE:
            del self._on_device[block]
        else:
            del self._lower[tier][entry]
        return tier, block

    def oldest(self, tier: Tier) -> Iterator[EntryId]:
        """Entries demoted to ``tier``, oldest demotion first (iterate lazily, mutate after)."""
        return iter(self._lower.get(tier, ()))

    def num_in(self, tier: Tier) -> int:
        if tier is Tier.DEVICE:
            return len(self._on_device)
        return len(self._lower.get(tier, ()))
