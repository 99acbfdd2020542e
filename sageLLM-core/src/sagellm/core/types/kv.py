"""Value objects describing KV-cache blocks, their tiers and their moves."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

BlockId = int
"""Index of a block inside a KV pool tier (0 .. num_blocks - 1)."""

SCALE_BYTES = 4
"""Bytes of one int8 KV scale (float32): one per block, layer and K/V."""


class Tier(str, Enum):
    """Storage tier of a KV block, fastest first."""

    DEVICE = "device"
    HOST = "host"
    DISK = "disk"


@dataclass(slots=True)
class KVBlockMeta:
    """Book-keeping of one block, shared by pools, caches and policies.

    Mutable on purpose: pools update access fields on every touch and
    copying a record per access would dominate the cost of the hot path.
    """

    block_id: BlockId
    tier: Tier = Tier.DEVICE
    ref_count: int = 0
    size_bytes: int = 0
    created_at: float = 0.0
    last_access: float = 0.0
    access_count: int = 0
    prefix_hash: int | None = None
    prefix_depth: int = 0  # position of the block in its token chain (0 = first)
    request_tokens: int = 0  # prompt length of the request that last used the block (0 = unknown)
    turn: int = 0  # position of that request in its conversation (0 = first or unknown)


@dataclass(frozen=True, slots=True)
class KVLayout:
    """Shape of the KV cache a pool must hold; comes from the model.

    One block stores ``block_size`` token positions for every layer::

        k[layer]: [num_blocks, block_size, num_kv_heads, head_dim]
        v[layer]: same shape

    ``dtype="int8"`` stores codes in those tensors plus one float32 scale per
    block, layer and K/V (value ~= code * scale), so an int8 block also holds
    ``2 * num_layers * 4`` bytes of scales::

        bytes_per_block = 2 * layers * block_size * heads * head_dim * dtype_bytes   (K and V codes)
                        + 2 * layers * 4                                            (int8 only: scales)
    """

    num_layers: int
    num_kv_heads: int
    head_dim: int
    block_size: int
    num_blocks: int
    dtype: str = "float32"
    device: str = "cpu"

    @property
    def dtype_bytes(self) -> int:
        return {"float32": 4, "float16": 2, "bfloat16": 2, "int8": 1}.get(self.dtype, 4)

    @property
    def is_quantized(self) -> bool:
        """True when the cache holds int8 codes with per-block scales."""
        return self.dtype == "int8"

    @property
    def scale_bytes_per_block(self) -> int:
        """Bytes of the float32 K and V scales of one block over all layers (0 for float caches)."""
        return 2 * self.num_layers * SCALE_BYTES if self.is_quantized else 0

    @property
    def bytes_per_block(self) -> int:
        """K and V of all layers for one block, int8 scales included."""
        codes = 2 * self.num_layers * self.block_size * self.num_kv_heads * self.head_dim * self.dtype_bytes
        return codes + self.scale_bytes_per_block

    @property
    def bytes_per_token(self) -> float:
        """KV bytes one token position costs when its block is full (scales spread over the block)."""
        return self.bytes_per_block / self.block_size


@dataclass(frozen=True, slots=True)
class PrefixHit:
    """Result of a prefix lookup: the longest cached block-aligned prefix."""

    num_matched_tokens: int = 0
    block_ids: tuple[BlockId, ...] = ()

    @property
    def num_matched_blocks(self) -> int:
        return len(self.block_ids)


@dataclass(frozen=True, slots=True)
class BlockMove:
    """Move (or copy) one block from one tier to another."""

    block_id: BlockId
    src_tier: Tier
    dst_tier: Tier
    dst_block_id: BlockId | None = None  # None: the pool chooses
    keep_source: bool = False  # True: copy (the source stays); False: move (the caller's source reference is freed)


@dataclass(frozen=True, slots=True)
class MigrationPlan:
    """A batch of block moves the pool should execute together."""

    moves: tuple[BlockMove, ...] = field(default_factory=tuple)

    def __len__(self) -> int:
        return len(self.moves)


@dataclass(frozen=True, slots=True)
class TierUsage:
    """Occupancy of one tier of a tiered pool (blocks, not bytes: tiers share the block shape)."""

    tier: Tier
    num_blocks: int
    num_used_blocks: int

    @property
    def num_free_blocks(self) -> int:
        return self.num_blocks - self.num_used_blocks

    @property
    def utilization(self) -> float:
        return self.num_used_blocks / self.num_blocks if self.num_blocks else 0.0


@dataclass(frozen=True, slots=True)
class MigrationRate:
    """Blocks and bytes a pool moved from one tier to another, and the seconds the copies took."""

    src_tier: Tier
    dst_tier: Tier
    num_blocks: int
    num_bytes: int
    seconds: float

    @property
    def gb_per_s(self) -> float:
        """Decimal GB (1e9 bytes) per second of copy time; 0.0 before the first migration."""
        return self.num_bytes / self.seconds / 1e9 if self.seconds > 0 else 0.0


@dataclass(frozen=True, slots=True)
class KVPoolStats:
    """A snapshot of pool occupancy, the numbers dashboards plot."""

    num_blocks: int
    num_free_blocks: int
    num_used_blocks: int
    num_shared_blocks: int
    block_size: int
    bytes_per_block: int
    num_used_tokens: int = 0  # token slots actually holding KV (<= used * block_size)
    tiers: tuple[TierUsage, ...] = ()  # every tier the pool has, device first (empty: the pool reports no tiers)
    migrations: tuple[MigrationRate, ...] = ()  # one per (src, dst) direction migrated so far

    @property
    def utilization(self) -> float:
        return self.num_used_blocks / self.num_blocks if self.num_blocks else 0.0

    @property
    def fragmentation(self) -> float:
        """Share of allocated token slots that hold no token (internal waste)."""
        capacity = self.num_used_blocks * self.block_size
        if capacity == 0 or self.num_used_tokens == 0:
            return 0.0
        return 1.0 - self.num_used_tokens / capacity
