"""Small helpers shared by the policy tests (imported as a plain module: tests/ is on sys.path)."""

from __future__ import annotations

from collections.abc import Iterable

from sagellm.core.protocols import EvictionPolicy
from sagellm.core.types import EvictionContext


def insert(policy: EvictionPolicy, blocks: Iterable[int], now: float = 0.0) -> EvictionPolicy:
    for block in blocks:
        policy.on_insert(block, now)
    return policy


def victims(policy: EvictionPolicy, num_blocks: int, pinned: Iterable[int] = (), now: float = 0.0) -> list[int]:
    held = frozenset(pinned)
    return policy.select_victims(EvictionContext(num_blocks=num_blocks, now=now, is_evictable=lambda b: b not in held))


def evict(policy: EvictionPolicy, num_blocks: int, pinned: Iterable[int] = (), now: float = 0.0) -> list[int]:
    """Select and remove, as a cache does."""
    chosen = victims(policy, num_blocks, pinned, now)
    for block in chosen:
        policy.on_remove(block)
    return chosen
