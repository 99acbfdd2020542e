"""Seam for eviction: which cached blocks to drop when the pool runs short."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from sagellm.core.types.eviction import EvictionContext
from sagellm.core.types.kv import BlockId


@runtime_checkable
class EvictionPolicy(Protocol):
    """Ranks the blocks it has been told about; never frees anything itself.

    The cache calls the hooks as blocks are cached, hit and dropped; when
    the pool is short it asks for victims and then removes them (calling
    ``on_remove``). ``select_victims`` may return fewer blocks than asked if
    not enough are evictable.
    """

    @property
    def name(self) -> str: ...

    def on_insert(self, block_id: BlockId, now: float = 0.0) -> None: ...

    def on_access(self, block_id: BlockId, now: float = 0.0) -> None: ...

    def on_remove(self, block_id: BlockId) -> None: ...

    def select_victims(self, context: EvictionContext) -> list[BlockId]: ...

    def __len__(self) -> int: ...
