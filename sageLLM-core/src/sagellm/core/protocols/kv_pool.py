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


@runtime_checkable
class MigrationTicket(CompletionHandle, Protocol):
    """What a tiered pool's ``migrate`` returns: the destination ids at once, the data after ``wait``.

    Knowing the ids at submission lets a caller update its block tables
    without blocking; it must not read the blocks before ``wait`` returns.
    """

    @property
    def dst_block_ids(self) -> list[BlockId]:
        """Destination ids in plan order (the pool's choice where a move left it None)."""
        ...


@runtime_checkable
class TieredKVPool(KVPool, Protocol):
    """A pool with slower tiers below the device (host memory, disk) that an engine can use.

    An engine preempts by swapping a sequence's blocks down and resumes by
    swapping them back, and keeps cached prefixes by demoting them instead
    of dropping them; for that it frees blocks in any tier and reads where
    each migrated block landed.
    """

    @property
    def tiers(self) -> tuple[Tier, ...]:
        """Every tier the pool has, device first, fastest first."""
        ...

    def free(self, block_ids: Sequence[BlockId], tier: Tier = Tier.DEVICE) -> None: ...

    def migrate(self, plan: MigrationPlan) -> MigrationTicket: ...


@runtime_checkable
class QuantizedKVPool(KVPool, Protocol):
    """A pool that can store int8 codes: attention needs each block's scales to read them.

    A pool whose layout is quantized must offer this; a float pool returns None.
    """

    def kv_scales(self, layer: int) -> tuple[Any, Any] | None:
        """(key, value) per-block scales of one layer, [num_blocks] each; None if the pool stores floats."""
        ...
