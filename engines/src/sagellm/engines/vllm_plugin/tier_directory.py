"""Which lower tier holds each stored entry: the scheduler side's picture of the worker's pool.

The worker's pool has a host tier and maybe a disk tier below it. The
scheduler decides every placement (the plan is final), so it keeps this
directory: an LRU order per tier and a capacity per tier, the same policy
as the native engine's demotion (docs/architecture.md, "KV tiers")::

    save      new entry ──► host (most recent end)
    host full   oldest unpinned host entry ──► disk      (demote)
    disk full   oldest unpinned disk entry ──► dropped   (forgotten by the prefix index too)

An entry a pending load reads is *pinned*: it is not chosen as a victim
until the load's step has been planned. Changes are recorded as the net
move of each entry since the last :meth:`take_changes`, so the worker
never copies a block it then frees in the same step.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping

from sagellm.core.types import Tier
from sagellm.engines.vllm_plugin.plan import TierChange


class TierDirectory:
    """Placement of entries in the lower tiers, fastest first, each an LRU order with a capacity."""

    def __init__(self, capacities: Mapping[Tier, int]) -> None:
        self._tiers = tuple(tier for tier, size in capacities.items() if size > 0)
        self._capacity = dict(capacities)
        self._order: dict[Tier, OrderedDict[int, None]] = {tier: OrderedDict() for tier in self._tiers}
        self._where: dict[int, Tier] = {}
        self._pinned: dict[int, int] = {}
        self._step_start: dict[int, Tier | None] = {}  # entries touched this step -> tier at its start
        self._next_id = 0

    @property
    def tiers(self) -> tuple[Tier, ...]:
        return self._tiers

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, entry_id: object) -> bool:
        return entry_id in self._where

    def tier_of(self, entry_id: int) -> Tier | None:
        return self._where.get(entry_id)

    def num_entries(self, tier: Tier) -> int:
        return len(self._order.get(tier, ()))

    def new_ids(self, count: int) -> list[int]:
        """Fresh entry ids (never reused: a stale id in a late message can then never alias a new entry)."""
        first = self._next_id
        self._next_id += count
        return list(range(first, first + count))

    def place(self, entry_ids: Iterable[int]) -> list[int]:
        """Store new entries in the top tier, making room below; returns every entry dropped for it.

        An entry that finds no room (every resident entry pinned) is dropped
        itself and listed with the others.
        """
        dropped: list[int] = []
        for entry_id in entry_ids:
            self._step_start.setdefault(entry_id, None)
            if not self._tiers or not self._make_room(0, dropped):
                dropped.append(entry_id)
                continue
            top = self._tiers[0]
            self._order[top][entry_id] = None
            self._where[entry_id] = top
        return dropped

    def touch(self, entry_ids: Iterable[int]) -> None:
        """Mark entries just used (a prefix hit): they become the last victims of their tier."""
        for entry_id in entry_ids:
            tier = self._where.get(entry_id)
            if tier is not None:
                self._order[tier].move_to_end(entry_id)

    def pin(self, entry_ids: Iterable[int]) -> None:
        for entry_id in entry_ids:
            self._pinned[entry_id] = self._pinned.get(entry_id, 0) + 1

    def unpin(self, entry_ids: Iterable[int]) -> None:
        for entry_id in entry_ids:
            count = self._pinned.get(entry_id, 0) - 1
            if count > 0:
                self._pinned[entry_id] = count
            else:
                self._pinned.pop(entry_id, None)

    def take_changes(self) -> tuple[TierChange, ...]:
        """Net moves of stored entries since the last call: drops first, then demotions."""
        changes = [
            TierChange(entry_id, start, self._where.get(entry_id))
            for entry_id, start in self._step_start.items()
            if start is not None and start is not self._where.get(entry_id)
        ]
        self._step_start.clear()
        return tuple(sorted(changes, key=lambda change: change.dst is not None))

    def _make_room(self, level: int, dropped: list[int]) -> bool:
        """Free one slot in tier ``level`` if it is full, pushing its oldest unpinned entry down."""
        tier = self._tiers[level]
        order = self._order[tier]
        if len(order) < self._capacity[tier]:
            return True
        victim = next((entry_id for entry_id in order if entry_id not in self._pinned), None)
        if victim is None:
            return False
        self._step_start.setdefault(victim, tier)
        del order[victim]
        if level + 1 < len(self._tiers) and self._make_room(level + 1, dropped):
            below = self._tiers[level + 1]
            self._order[below][victim] = None
            self._where[victim] = below
        else:
            del self._where[victim]
            dropped.append(victim)
        return True
