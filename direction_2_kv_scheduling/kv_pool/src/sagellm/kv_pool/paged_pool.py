"""PagedKVPool: ref-counted fixed-size KV blocks on the device, with optional host and disk tiers.

The pool is a composition of parts, one concept each:

* :class:`~sagellm.kv_pool.storage.KVStorage` — the device tier's bytes (one contiguous tensor);
* :class:`~sagellm.kv_pool.block_store.OffloadStorage` — host (pinned on CUDA) and disk (mmap) tiers;
* :class:`~sagellm.kv_pool.block_allocator.BlockAllocator` — per tier: free stack, ref counts, pins, metadata;
* :class:`~sagellm.kv_pool.migrator.Migrator` — runs migration plans: reserve blocks
  (:class:`~sagellm.kv_pool.migration_planner.MigrationPlanner`), copy on worker threads (CUDA copy
  stream + events on GPU: :class:`~sagellm.kv_pool.block_copier.BlockCopier`), settle, meter;
* :class:`~sagellm.kv_pool.sequence_tables.SequenceBlockTables` — sageLLM's per-sequence API.

It implements :class:`sagellm.core.protocols.KVPool` and keeps the names
sageLLM users know (``migrate_blocks``, ``get_utilization``, ...). Calls
that take a ``tier`` default to the device tier, so single-tier callers
(the engine's attention, KVManager) are unchanged. Thread-safe: one lock
guards the book-keeping; migrations copy outside it on worker threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import torch

from sagellm.core.config import KVPoolSection
from sagellm.core.errors import ConfigError, KVBlockError, OutOfBlocksError
from sagellm.core.types import BlockId, BlockMove, KVBlockMeta, KVLayout, KVPoolStats, MigrationPlan, Tier
from sagellm.core.types.kv import TierUsage
from sagellm.kv_pool.block_allocator import BlockAllocator
from sagellm.kv_pool.block_store import OffloadStorage
from sagellm.kv_pool.completion import CompletedHandle
from sagellm.kv_pool.kv_quant import read_blocks, write_tokens
from sagellm.kv_pool.migrator import Handle, Migrator
from sagellm.kv_pool.pool_options import PoolOptions
from sagellm.kv_pool.sequence_tables import SequenceBlockTables, SequenceId
from sagellm.kv_pool.storage import KVStorage, is_quantized, resolve_dtype
from sagellm.kv_pool.tier_set import TierSet, TierSlot, coerce_tier
from sagellm.kv_pool.tier_stats import TierStats

EvictionCallback = Callable[[list[BlockId]], None]
"""Called with the ids a caller reports evicted (see :meth:`PagedKVPool.notify_evicted`)."""


class PagedKVPool:
    """Paged KV cache: ``layout.num_blocks`` device blocks, plus ``options.host_blocks`` / ``disk_blocks``.

    Build it directly with a :class:`KVLayout` (and :class:`PoolOptions`), or
    through the registry (``create_kv_pool(config, layout=layout)``), which
    calls :meth:`from_config`. Call :meth:`close` (or use ``with``) to stop
    the migration workers and delete the disk tier's files.
    """

    def __init__(self, layout: KVLayout, options: PoolOptions | None = None) -> None:
        _check_layout(layout)
        self._layout = layout
        self._options = options or PoolOptions()
        self._storage = KVStorage(layout)
        self._blocks = BlockAllocator(layout.num_blocks, self._storage.bytes_per_block, Tier.DEVICE)
        self._tiers = TierSet(_build_tiers(layout, self._options, TierSlot(self._storage, self._blocks)))
        self._lock = threading.RLock()
        self._sequences = SequenceBlockTables(layout.block_size, self._allocate_device, self._free_in)
        self._migrator = Migrator(self._tiers, self._lock, self._storage.device, self._options.migration_workers)
        self._eviction_callbacks: list[EvictionCallback] = []

    @classmethod
    def from_config(cls, section: KVPoolSection, *, layout: KVLayout) -> PagedKVPool:
        """Registry constructor: the engine computes ``layout`` (model shape + GB budget) from ``section``.

        Tier sizes and migration settings come from ``section.options``
        (:class:`PoolOptions`). The section is checked against the layout so
        a config the engine did not honour fails loudly instead of silently
        running another size.
        """
        options = PoolOptions.from_mapping(section.options)
        if section.block_size != layout.block_size:
            raise ConfigError(
                f"kv_pool.block_size is {section.block_size} but the layout has block_size {layout.block_size}"
            )
        if section.cache_dtype not in ("auto", layout.dtype):
            raise ConfigError(f"kv_pool.cache_dtype is {section.cache_dtype} but the layout has dtype {layout.dtype}")
        return cls(layout, options)

    # ---- KVPool protocol (a ``tier`` argument defaults to the device) ------

    @property
    def layout(self) -> KVLayout:
        return self._layout

    @property
    def options(self) -> PoolOptions:
        return self._options

    @property
    def num_free_blocks(self) -> int:
        """Free device blocks."""
        return self._blocks.num_free

    @property
    def tiers(self) -> tuple[Tier, ...]:
        """The tiers this pool has, fastest first."""
        return self._tiers.tiers

    def can_allocate(self, num_blocks: int, tier: Tier = Tier.DEVICE) -> bool:
        """False for a tier this pool lacks (NotSupportedError only for a value that is no tier at all)."""
        if not self._tiers.has(tier):
            return False
        return 0 <= num_blocks <= self._tiers.get(tier).blocks.num_free

    def allocate(self, num_blocks: int, tier: Tier = Tier.DEVICE) -> list[BlockId]:
        """Take ``num_blocks`` blocks of ``tier`` at reference 1; all or nothing (OutOfBlocksError when short)."""
        if tier is Tier.DEVICE:  # the engine's hot path: no tier lookup
            with self._lock:
                return self._allocate_device(num_blocks)
        slot = self._tiers.get(tier)
        with self._lock:
            if slot.store.tier is not Tier.DEVICE:
                self._migrator.check_open()
            block_ids = slot.blocks.allocate(num_blocks)
            slot.store.reset_scales(block_ids)
            return block_ids

    def retain(self, block_ids: Sequence[BlockId], tier: Tier = Tier.DEVICE) -> None:
        blocks = self._blocks if tier is Tier.DEVICE else self._tiers.get(tier).blocks
        with self._lock:
            blocks.retain(block_ids)

    def free(self, block_ids: Sequence[BlockId], tier: Tier = Tier.DEVICE) -> None:
        """Drop one reference per id; KVBlockError (and no change) on an unknown, free or migrating id."""
        blocks = self._blocks if tier is Tier.DEVICE else self._tiers.get(tier).blocks
        with self._lock:
            blocks.free(block_ids)

    def ref_count(self, block_id: BlockId, tier: Tier = Tier.DEVICE) -> int:
        return self._tiers.get(tier).blocks.ref_count(block_id)

    def copy_on_write(self, block_id: BlockId) -> BlockId:
        """The same id when unshared; else a private copy (all layers, K and V) holding one reference.

        The caller's reference moves from the shared block to the copy, so
        the other owners keep the original untouched.
        """
        with self._lock:
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

    def migrate(self, plan: MigrationPlan) -> Handle:
        """Move or copy blocks between tiers, asynchronously; see :mod:`sagellm.kv_pool.migration_planner`.

        Destination ids the plan leaves ``None`` are allocated now and are in
        ``handle.dst_block_ids`` at once; the data is there after
        ``handle.wait()``. A move frees the caller's source reference when
        the copy completes; ``BlockMove.keep_source`` makes it a copy.
        All or nothing: NotSupportedError (tier), KVBlockError (ids),
        OutOfBlocksError (space) leave the pool unchanged.
        """
        return self._migrator.submit(plan)

    def block_meta(self, block_id: BlockId, tier: Tier = Tier.DEVICE) -> KVBlockMeta:
        """The live metadata record of ``block_id`` (updated in place by the pool)."""
        return self._tiers.get(tier).blocks.meta(block_id)

    def kv_tensors(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(key, value) device views of one layer, each [num_blocks, block_size, kv_heads, head_dim].

        Views into ONE tensor [num_layers, 2, num_blocks, block_size, heads, dim]
        rather than 2 * num_layers tensors: one allocation (fits or fails up
        front), easy to size (its bytes are the budget), easy to migrate (a
        block of every layer is one strided copy). int8 pools hand out codes
        here; see :meth:`kv_scales`, :meth:`write_kv` and :meth:`read_kv`.
        """
        return self._storage.kv_tensors(layer)

    def stats(self) -> KVPoolStats:
        """Device occupancy (as before), plus usage of every tier and migration rates per direction."""
        with self._lock:
            num_free = self._blocks.num_free
            tiers = self._tier_usage()
            return KVPoolStats(
                num_blocks=self._layout.num_blocks,
                num_free_blocks=num_free,
                num_used_blocks=self._layout.num_blocks - num_free,
                num_shared_blocks=self._blocks.num_shared,
                block_size=self._layout.block_size,
                bytes_per_block=self._storage.bytes_per_block,
                num_used_tokens=self._sequences.num_used_tokens,
                tiers=tiers,
                migrations=self._migrator.rates(),
            )

    def tier_stats(self) -> TierStats:
        """Blocks used/free per tier and migration GB/s per direction (bytes moved / copy seconds)."""
        with self._lock:
            return TierStats(self._tier_usage(), self._migrator.rates())

    # ---- tier moves the engine uses ------------------------------------

    def swap_out(self, block_ids: Sequence[BlockId], tier: Tier = Tier.HOST) -> Handle:
        """Move a (preempted) sequence's device blocks to ``tier``; ``dst_block_ids`` are their new ids there."""
        return self.move_blocks(block_ids, Tier.DEVICE, tier)

    def swap_in(self, block_ids: Sequence[BlockId], src_tier: Tier = Tier.HOST) -> Handle:
        """Move blocks back to the device; ``dst_block_ids`` are the new device ids, in order."""
        return self.move_blocks(block_ids, src_tier, Tier.DEVICE)

    def demote(self, block_ids: Sequence[BlockId], tier: Tier | None = None, src_tier: Tier = Tier.DEVICE) -> Handle:
        """Move cached prefix blocks down instead of dropping them.

        ``tier=None`` picks the fastest tier below ``src_tier`` with room for
        all of them (host, then disk); OutOfBlocksError when none has. Their
        metadata (prefix hash, depth, access history) moves with them.
        """
        with self._lock:  # the room check and the reservation see the same free counts
            dst = tier if tier is not None else self._fastest_tier_with_room_below(src_tier, len(block_ids))
            return self.move_blocks(block_ids, src_tier, dst)

    def promote(self, block_ids: Sequence[BlockId], src_tier: Tier) -> Handle:
        """Bring demoted blocks back to the device on a prefix hit; ``dst_block_ids`` are the device ids."""
        return self.move_blocks(block_ids, src_tier, Tier.DEVICE)

    def move_blocks(
        self, block_ids: Sequence[BlockId], src_tier: Tier, dst_tier: Tier, *, keep_source: bool = False
    ) -> Handle:
        """Migrate ``block_ids`` from ``src_tier`` to ``dst_tier`` (pool-chosen destinations, plan order)."""
        src, dst = coerce_tier(src_tier), coerce_tier(dst_tier)
        return self._migrator.submit(MigrationPlan(tuple(BlockMove(b, src, dst, None, keep_source) for b in block_ids)))

    # ---- engine helpers --------------------------------------------------

    def flat_kv_tensors(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(key, value) of one layer as [num_blocks * block_size, kv_heads, head_dim] views.

        The engine scatters new KV with ``k[slots] = ...`` where
        ``slot = block_id * block_size + offset``; the views alias the pool's
        storage, so nothing is copied.
        """
        return self._storage.flat_kv_tensors(layer)

    def kv_scales(self, layer: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(key, value) per-block scales of one device layer, each [num_blocks] float32; None unless int8."""
        return self._storage.kv_scales(layer)

    def write_kv(self, layer: int, slots: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> None:
        """Store new tokens' K and V ([T, heads, dim]) at device ``slots`` ([T]); int8 pools quantize."""
        key_blocks, value_blocks = self._storage.kv_tensors(layer)
        scales = self._storage.kv_scales(layer)
        write_tokens(key_blocks, None if scales is None else scales[0], slots, key)
        write_tokens(value_blocks, None if scales is None else scales[1], slots, value)

    def read_kv(
        self, layer: int, block_ids: Sequence[BlockId], tier: Tier = Tier.DEVICE, dtype: torch.dtype | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """K and V of ``block_ids`` in one layer of ``tier``, each [n, block_size, heads, dim] in ``dtype``.

        The default dtype is the pool's own for float pools and
        ``options.compute_dtype`` for int8 pools (dequantized).
        """
        store = self._tiers.get(tier).store
        ids = torch.as_tensor(list(block_ids), dtype=torch.long, device=store.device)
        dtype = dtype or self.compute_dtype
        key_blocks, value_blocks = store.kv_tensors(layer)
        scales = store.kv_scales(layer)
        key = read_blocks(key_blocks, None if scales is None else scales[0], ids, dtype)
        value = read_blocks(value_blocks, None if scales is None else scales[1], ids, dtype)
        return key, value

    @property
    def compute_dtype(self) -> torch.dtype:
        """The dtype :meth:`read_kv` returns by default."""
        own = self._storage.tensor.dtype
        return resolve_dtype(self._options.compute_dtype) if is_quantized(own) else own

    def block_data(self, block_id: BlockId, tier: Tier = Tier.DEVICE) -> torch.Tensor:
        """K and V of every layer of one block, a [layers, 2, block_size, heads, dim] view (codes if int8)."""
        slot = self._tiers.get(tier)
        slot.blocks.meta(block_id)  # KVBlockError for an unknown id
        return slot.store.block(block_id)

    def block_scales(self, block_id: BlockId, tier: Tier = Tier.DEVICE) -> torch.Tensor | None:
        """int8 scales of one block, [layers, 2]; None for float pools."""
        slot = self._tiers.get(tier)
        slot.blocks.meta(block_id)
        return slot.store.block_scales(block_id)

    def touch(self, block_ids: Sequence[BlockId], tier: Tier = Tier.DEVICE) -> None:
        """Record an access (attention read, prefix hit) in the blocks' metadata."""
        with self._lock:
            self._tiers.get(tier).blocks.touch(block_ids)

    @property
    def nbytes(self) -> int:
        """Device bytes of the KV storage (the whole pool, used or not; int8 scales included)."""
        return self._storage.nbytes

    def tier_nbytes(self, tier: Tier) -> int:
        """Bytes a tier holds (host memory, or disk file size) whether used or not."""
        return self._tiers.get(tier).store.nbytes

    @property
    def disk_path(self) -> str | None:
        """The disk tier's own directory (deleted by :meth:`close`); None without a disk tier."""
        if not self._tiers.has(Tier.DISK):
            return None
        store = self._tiers.get(Tier.DISK).store
        return store.path if isinstance(store, OffloadStorage) else None

    def close(self) -> None:
        """Finish migrations in flight, stop the workers, delete the disk tier's files. Idempotent."""
        self._migrator.close()
        for _, slot in self._tiers:
            slot.store.close()

    @property
    def closed(self) -> bool:
        return self._migrator.closed

    def __enter__(self) -> PagedKVPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- names sageLLM users know (DESIGN.md section 5) ----------------

    def migrate_blocks(self, plan: MigrationPlan) -> Handle:
        """sageLLM's name for :meth:`migrate`."""
        return self.migrate(plan)

    def get_utilization(self, tier: Tier = Tier.DEVICE) -> float:
        """Share of the tier's blocks in use (0.0 for a tier this pool does not have)."""
        if not self._tiers.has(tier):
            return 0.0
        blocks = self._tiers.get(tier).blocks
        return blocks.num_used / blocks.num_blocks

    def get_fragmentation(self, tier: Tier = Tier.DEVICE) -> float:
        """Share of used device token slots holding no token (per-sequence API); 0.0 for other tiers."""
        return self.stats().fragmentation if coerce_tier(tier) is Tier.DEVICE else 0.0

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
        with self._lock:
            return self._sequences.allocate_for_sequence(seq_id, num_tokens)

    def release_sequence(self, seq_id: SequenceId) -> None:
        """Free every block of ``seq_id`` (one reference each, in its current tier) and forget the sequence."""
        with self._lock:
            self._sequences.release_sequence(seq_id)

    def block_table(self, seq_id: SequenceId) -> list[BlockId]:
        with self._lock:
            return self._sequences.block_table(seq_id)

    def sequence_tier(self, seq_id: SequenceId) -> Tier:
        with self._lock:
            return self._sequences.tier(seq_id)

    def swap_out_sequence(self, seq_id: SequenceId, tier: Tier = Tier.HOST) -> Handle:
        """Move a sequence's blocks to ``tier``; its table holds the new ids at once (data after ``wait``)."""
        return self._move_sequence(seq_id, coerce_tier(tier))

    def swap_in_sequence(self, seq_id: SequenceId) -> Handle:
        """Bring a swapped-out sequence back; its table holds the new device ids at once."""
        return self._move_sequence(seq_id, Tier.DEVICE)

    def __repr__(self) -> str:
        layout = self._layout
        return (
            f"PagedKVPool(blocks={layout.num_blocks}, block_size={layout.block_size}, "
            f"free={self.num_free_blocks}, dtype={layout.dtype}, device={layout.device}, "
            f"tiers={[t.value for t in self.tiers]})"
        )

    # ---- internals -------------------------------------------------------

    def _move_sequence(self, seq_id: SequenceId, dst: Tier) -> Handle:
        with self._lock:
            src = self._sequences.tier(seq_id)
            if src is dst:
                raise KVBlockError(f"sequence {seq_id!r} is already in the {dst.value} tier")
            table = self._sequences.block_table(seq_id)
            plan = MigrationPlan(tuple(BlockMove(b, src, dst) for b in table))

            def relocate(moves: tuple[BlockMove, ...]) -> None:
                self._sequences.relocate(seq_id, [m.dst_block_id for m in moves if m.dst_block_id is not None], dst)

            if not table:
                relocate(())
                return CompletedHandle()
            return self._migrator.submit(plan, relocate)

    def _tier_usage(self) -> tuple[TierUsage, ...]:
        return tuple(TierUsage(tier, slot.blocks.num_blocks, slot.blocks.num_used) for tier, slot in self._tiers)

    def _fastest_tier_with_room_below(self, src_tier: Tier, num_blocks: int) -> Tier:
        order = list(Tier)
        for tier in order[order.index(coerce_tier(src_tier)) + 1 :]:
            if self.can_allocate(num_blocks, tier):
                return tier
        raise OutOfBlocksError(
            f"cannot demote {num_blocks} block(s): no tier below {coerce_tier(src_tier).value} has room"
        )

    def _allocate_device(self, num_blocks: int) -> list[BlockId]:
        block_ids = self._blocks.allocate(num_blocks)
        if self._storage.scales is not None:
            self._storage.reset_scales(block_ids)
        return block_ids

    def _free_in(self, block_ids: Sequence[BlockId], tier: Tier) -> None:
        self._tiers.get(tier).blocks.free(block_ids)


def _build_tiers(layout: KVLayout, options: PoolOptions, device: TierSlot) -> dict[Tier, TierSlot]:
    slots = {Tier.DEVICE: device}
    on_cuda = device.store.device.type == "cuda"
    if options.host_blocks:
        pin = on_cuda if options.pin_host_memory is None else options.pin_host_memory
        if pin and not torch.cuda.is_available():
            raise ConfigError("kv_pool option pin_host_memory needs CUDA, and torch.cuda.is_available() is False")
        host = OffloadStorage.host(layout, options.host_blocks, pin_memory=pin)
        slots[Tier.HOST] = TierSlot(host, BlockAllocator(options.host_blocks, host.bytes_per_block, Tier.HOST))
    if options.disk_blocks:
        disk = OffloadStorage.disk(layout, options.disk_blocks, options.disk_dir)
        slots[Tier.DISK] = TierSlot(disk, BlockAllocator(options.disk_blocks, disk.bytes_per_block, Tier.DISK))
    return slots


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
