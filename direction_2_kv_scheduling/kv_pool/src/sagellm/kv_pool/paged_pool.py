"""PagedKVPool: ref-counted fixed-size KV blocks on the compute device.

The pool is a thin composition of three parts, one concept each:

* :class:`~sagellm.kv_pool.storage.KVStorage` — the bytes (one contiguous tensor);
* :class:`~sagellm.kv_pool.block_allocator.BlockAllocator` — free stack, ref counts, metadata;
* :class:`~sagellm.kv_pool.sequence_tables.SequenceBlockTables` — sageLLM's per-sequence API.

It implements :class:`sagellm.core.protocols.KVPool` and keeps the names
sageLLM users know (``migrate_blocks``, ``get_utilization``,
``get_fragmentation``, ``register_eviction_callback``,
``allocate_for_sequence``, ``release_sequence``). Only the device tier
exists for now; ``migrate`` already has its final signature so callers do
not change when host and disk tiers land. Not thread-safe: the engine's
step loop is the only caller.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from sagellm.core.config import KVPoolSection
from sagellm.core.errors import ConfigError, KVBlockError, NotSupportedError
from sagellm.core.protocols import CompletionHandle
from sagellm.core.types import BlockId, KVBlockMeta, KVLayout, KVPoolStats, MigrationPlan, Tier
from sagellm.kv_pool.block_allocator import BlockAllocator
from sagellm.kv_pool.completion import CompletedHandle
from sagellm.kv_pool.sequence_tables import SequenceBlockTables, SequenceId
from sagellm.kv_pool.storage import KVStorage

EvictionCallback = Callable[[list[BlockId]], None]
"""Called with the ids a caller reports evicted (see :meth:`PagedKVPool.notify_evicted`)."""


class PagedKVPool:
    """Paged KV cache of ``layout.num_blocks`` blocks on ``layout.device``.

    Build it directly with a :class:`KVLayout`, or through the registry
    (``create_kv_pool(config, layout=layout)``), which calls :meth:`from_config`.
    """

    def __init__(self, layout: KVLayout) -> None:
        _check_layout(layout)
        self._layout = layout
        self._storage = KVStorage(layout)
        self._blocks = BlockAllocator(layout.num_blocks, layout.bytes_per_block, Tier.DEVICE)
        self._sequences = SequenceBlockTables(layout.block_size, self._blocks.allocate, self._blocks.free)
        self._eviction_callbacks: list[EvictionCallback] = []

    @classmethod
    def from_config(cls, section: KVPoolSection, *, layout: KVLayout) -> PagedKVPool:
        """Registry constructor: the engine computes ``layout`` (model shape + GB budget) from ``section``.

        The section is checked against the layout so a config the engine
        did not honour fails loudly instead of silently running another size.
        """
        if section.options:
            raise ConfigError(f"kv_pool 'paged' takes no options (got {sorted(section.options)})")
        if section.block_size != layout.block_size:
            raise ConfigError(
                f"kv_pool.block_size is {section.block_size} but the layout has block_size {layout.block_size}"
            )
        if section.cache_dtype not in ("auto", layout.dtype):
            raise ConfigError(f"kv_pool.cache_dtype is {section.cache_dtype} but the layout has dtype {layout.dtype}")
        return cls(layout)

    # ---- KVPool protocol -------------------------------------------------

    @property
    def layout(self) -> KVLayout:
        return self._layout

    @property
    def num_free_blocks(self) -> int:
        return self._blocks.num_free

    def can_allocate(self, num_blocks: int, tier: Tier = Tier.DEVICE) -> bool:
        return tier == Tier.DEVICE and 0 <= num_blocks <= self._blocks.num_free

    def allocate(self, num_blocks: int, tier: Tier = Tier.DEVICE) -> list[BlockId]:
        """Take ``num_blocks`` blocks at reference 1; all or nothing (OutOfBlocksError when short)."""
        if tier is not Tier.DEVICE:
            _check_device_tier(tier)  # also accepts the plain string "device"
        return self._blocks.allocate(num_blocks)

    def retain(self, block_ids: Sequence[BlockId]) -> None:
        self._blocks.retain(block_ids)

    def free(self, block_ids: Sequence[BlockId]) -> None:
        """Drop one reference per id; KVBlockError (and no change) on an unknown or free id."""
        self._blocks.free(block_ids)

    def ref_count(self, block_id: BlockId) -> int:
        return self._blocks.ref_count(block_id)

    def copy_on_write(self, block_id: BlockId) -> BlockId:
        """The same id when unshared; else a private copy (all layers, K and V) holding one reference.

        The caller's reference moves from the shared block to the copy, so
        the other owners keep the original untouched.
        """
        refs = self._blocks.ref_count(block_id)
        if refs == 0:
            raise KVBlockError(f"cannot copy-on-write KV block {block_id}: it is not allocated")
        if refs == 1:
            self._blocks.touch([block_id])
            return block_id
        (copy,) = self._blocks.allocate(1)  # OutOfBlocksError here leaves everything as it was
        self._storage.copy_block(block_id, copy)
        self._blocks.free([block_id])
        return copy

    def migrate(self, plan: MigrationPlan) -> CompletionHandle:
        """Execute tier moves; only the empty plan is possible while the pool has a single tier."""
        if len(plan) == 0:
            return CompletedHandle()
        raise NotSupportedError("tier migration lands with tiered pools; this pool has only the device tier")

    def block_meta(self, block_id: BlockId) -> KVBlockMeta:
        """The live metadata record of ``block_id`` (updated in place by the pool)."""
        return self._blocks.meta(block_id)

    def kv_tensors(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(key, value) views of one layer, each [num_blocks, block_size, kv_heads, head_dim].

        Views into ONE tensor [num_layers, 2, num_blocks, block_size, heads, dim]
        rather than 2 * num_layers tensors: one allocation (fits or fails up
        front), easy to size (its bytes are the budget), easy to migrate (a
        block of every layer is one strided copy). See :mod:`sagellm.kv_pool.storage`.
        """
        return self._storage.kv_tensors(layer)

    def stats(self) -> KVPoolStats:
        num_free = self._blocks.num_free
        return KVPoolStats(
            num_blocks=self._layout.num_blocks,
            num_free_blocks=num_free,
            num_used_blocks=self._layout.num_blocks - num_free,
            num_shared_blocks=self._blocks.num_shared,
            block_size=self._layout.block_size,
            bytes_per_block=self._layout.bytes_per_block,
            num_used_tokens=self._sequences.num_used_tokens,
        )

    # ---- engine helpers --------------------------------------------------

    def flat_kv_tensors(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(key, value) of one layer as [num_blocks * block_size, kv_heads, head_dim] views.

        The engine scatters new KV with ``k[slots] = ...`` where
        ``slot = block_id * block_size + offset``; the views alias the pool's
        storage, so nothing is copied.
        """
        return self._storage.flat_kv_tensors(layer)

    def touch(self, block_ids: Sequence[BlockId]) -> None:
        """Record an access (attention read, prefix hit) in the blocks' metadata."""
        self._blocks.touch(block_ids)

    @property
    def nbytes(self) -> int:
        """Device bytes of the KV storage (the whole pool, used or not)."""
        return self._storage.nbytes

    # ---- names sageLLM users know (DESIGN.md section 5) ----------------

    def migrate_blocks(self, plan: MigrationPlan) -> CompletionHandle:
        """sageLLM's name for :meth:`migrate`."""
        return self.migrate(plan)

    def get_utilization(self, tier: Tier = Tier.DEVICE) -> float:
        """Share of the tier's blocks in use (0.0 for a tier this pool does not have)."""
        return self.stats().utilization if tier == Tier.DEVICE else 0.0

    def get_fragmentation(self, tier: Tier = Tier.DEVICE) -> float:
        """Share of used token slots holding no token; fed by :meth:`allocate_for_sequence`."""
        return self.stats().fragmentation if tier == Tier.DEVICE else 0.0

    def register_eviction_callback(self, callback: EvictionCallback) -> None:
        """Have ``callback(block_ids)`` called on every :meth:`notify_evicted`."""
        self._eviction_callbacks.append(callback)

    def notify_evicted(self, block_ids: Sequence[BlockId]) -> None:
        """Tell the registered callbacks (prefix index, metrics) that these blocks were evicted.

        Only a notification: whoever evicted the blocks also frees them, so
        ownership stays with one caller.
        """
        evicted = list(block_ids)
        for callback in self._eviction_callbacks:
            callback(list(evicted))

    def allocate_for_sequence(self, seq_id: SequenceId, num_tokens: int) -> list[BlockId]:
        """Grow ``seq_id``'s block table to cover ``num_tokens`` tokens; return the whole table."""
        return self._sequences.allocate_for_sequence(seq_id, num_tokens)

    def release_sequence(self, seq_id: SequenceId) -> None:
        """Free every block of ``seq_id`` (one reference each) and forget the sequence."""
        self._sequences.release_sequence(seq_id)

    def block_table(self, seq_id: SequenceId) -> list[BlockId]:
        return self._sequences.block_table(seq_id)

    def __repr__(self) -> str:
        layout = self._layout
        return (
            f"PagedKVPool(blocks={layout.num_blocks}, block_size={layout.block_size}, "
            f"free={self.num_free_blocks}, dtype={layout.dtype}, device={layout.device})"
        )


def _check_device_tier(tier: Tier) -> None:
    if tier != Tier.DEVICE:
        raise NotSupportedError(f"this pool has only the device tier (asked for {getattr(tier, 'value', tier)})")


def _check_layout(layout: KVLayout) -> None:
    fields: dict[str, Any] = {
        "num_layers": layout.num_layers,
        "num_kv_heads": layout.num_kv_heads,
        "head_dim": layout.head_dim,
        "block_size": layout.block_size,
        "num_blocks": layout.num_blocks,
    }
    for name, value in fields.items():
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"KVLayout.{name} must be a positive int (got {value!r})")
