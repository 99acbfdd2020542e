"""Seam for KV storage: paged blocks of keys and values per layer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from sagellm.core.types.kv import BlockId, KVBlockMeta, KVLayout, KVPoolStats, MigrationPlan, Tier


@runtime_checkable
class CompletionHandle(Protocol):
    """Returned by asynchronous operations (migrations, transfers)."""

    def done(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> None: ...


@runtime_checkable
class KVPool(Protocol):
    """Fixed-size blocks with reference counts.

    A block returns to the free list when its last reference is freed.
    Sharing (prefix reuse, forks) is ``retain``; writing into a shared block
    must go through ``copy_on_write`` first.
    """

    @property
    def layout(self) -> KVLayout: ...

    @property
    def num_free_blocks(self) -> int: ...

    def can_allocate(self, num_blocks: int, tier: Tier = Tier.DEVICE) -> bool: ...

    def allocate(self, num_blocks: int, tier: Tier = Tier.DEVICE) -> list[BlockId]:
        """Take ``num_blocks`` free blocks (reference 1); raise OutOfBlocksError if short."""
        ...

    def retain(self, block_ids: Sequence[BlockId]) -> None: ...

    def free(self, block_ids: Sequence[BlockId]) -> None: ...

    def ref_count(self, block_id: BlockId) -> int: ...

    def copy_on_write(self, block_id: BlockId) -> BlockId:
        """Return a block safe to write: the same id if unshared, else a private copy."""
        ...

    def migrate(self, plan: MigrationPlan) -> CompletionHandle: ...

    def block_meta(self, block_id: BlockId) -> KVBlockMeta: ...

    def kv_tensors(self, layer: int) -> tuple[Any, Any]:
        """(key, value) storage of one layer, each [num_blocks, block_size, kv_heads, head_dim]."""
        ...

    def stats(self) -> KVPoolStats: ...
