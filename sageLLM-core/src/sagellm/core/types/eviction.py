"""Inputs of an eviction decision."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sagellm.core.types.kv import BlockId, KVBlockMeta


def _always(_: BlockId) -> bool:
    return True


@dataclass(frozen=True, slots=True)
class EvictionContext:
    """Ask for ``num_blocks`` victims among the blocks a policy tracks.

    Policies keep their own ordering (updated by access hooks), so a decision
    walks that order and skips blocks ``is_evictable`` rejects (still in use)
    instead of sorting every candidate on each call.
    """

    num_blocks: int
    now: float = 0.0
    is_evictable: Callable[[BlockId], bool] = _always
    block_meta: Callable[[BlockId], KVBlockMeta | None] | None = None
