"""Conformance suite for :class:`sagellm.core.protocols.KVPool`."""

from __future__ import annotations

from sagellm.core.errors import NotSupportedError, OutOfBlocksError, SageLLMError
from sagellm.core.protocols import CompletionHandle, KVPool
from sagellm.core.testing.raises import raises
from sagellm.core.types import BlockMove, MigrationPlan, Tier

NUM_BLOCKS = 8
BLOCK_SIZE = 4


class KVPoolConformance:
    """Inherit and implement :meth:`make_pool` (a CPU pool is fine)."""

    def make_pool(self, num_blocks: int, block_size: int) -> KVPool:
        raise NotImplementedError

    def _pool(self) -> KVPool:
        pool = self.make_pool(NUM_BLOCKS, BLOCK_SIZE)
        assert isinstance(pool, KVPool)
        return pool

    def test_layout_and_initial_state(self) -> None:
        pool = self._pool()
        assert pool.layout.num_blocks == NUM_BLOCKS
        assert pool.layout.block_size == BLOCK_SIZE
        assert pool.num_free_blocks == NUM_BLOCKS
        stats = pool.stats()
        assert stats.num_used_blocks == 0 and stats.utilization == 0.0

    def test_allocate_gives_distinct_blocks_with_one_reference(self) -> None:
        pool = self._pool()
        ids = pool.allocate(3)
        assert len(set(ids)) == 3
        assert all(0 <= b < NUM_BLOCKS for b in ids)
        assert pool.num_free_blocks == NUM_BLOCKS - 3
        assert all(pool.ref_count(b) == 1 for b in ids)
        assert pool.block_meta(ids[0]).ref_count == 1
        assert pool.block_meta(ids[0]).tier == Tier.DEVICE

    def test_over_allocation_raises_and_takes_nothing(self) -> None:
        pool = self._pool()
        pool.allocate(6)
        assert not pool.can_allocate(3)
        with raises(OutOfBlocksError):
            pool.allocate(3)
        assert pool.num_free_blocks == 2

    def test_free_returns_blocks_at_last_reference(self) -> None:
        pool = self._pool()
        (block,) = pool.allocate(1)
        pool.retain([block])
        assert pool.ref_count(block) == 2
        pool.free([block])
        assert pool.num_free_blocks == NUM_BLOCKS - 1
        pool.free([block])
        assert pool.num_free_blocks == NUM_BLOCKS
        assert pool.ref_count(block) == 0

    def test_double_free_is_an_error(self) -> None:
        pool = self._pool()
        (block,) = pool.allocate(1)
        pool.free([block])
        with raises(SageLLMError):
            pool.free([block])

    def test_all_blocks_can_be_cycled(self) -> None:
        pool = self._pool()
        for _ in range(3):
            ids = pool.allocate(NUM_BLOCKS)
            assert sorted(ids) == list(range(NUM_BLOCKS))
            pool.free(ids)
        assert pool.num_free_blocks == NUM_BLOCKS

    def test_kv_tensors_have_block_shape(self) -> None:
        pool = self._pool()
        layout = pool.layout
        for layer in range(layout.num_layers):
            key, value = pool.kv_tensors(layer)
            expected = (layout.num_blocks, layout.block_size, layout.num_kv_heads, layout.head_dim)
            assert tuple(key.shape) == expected and tuple(value.shape) == expected

    def test_copy_on_write_keeps_unshared_and_copies_shared(self) -> None:
        pool = self._pool()
        (block,) = pool.allocate(1)
        assert pool.copy_on_write(block) == block
        key, value = pool.kv_tensors(0)
        key[block, 0, 0, 0] = 7.0
        value[block, 1, 0, 0] = 3.0
        pool.retain([block])
        copy = pool.copy_on_write(block)
        assert copy != block
        assert pool.ref_count(block) == 1 and pool.ref_count(copy) == 1
        key, value = pool.kv_tensors(0)
        assert float(key[copy, 0, 0, 0]) == 7.0 and float(value[copy, 1, 0, 0]) == 3.0

    def test_stats_count_shared_blocks(self) -> None:
        pool = self._pool()
        ids = pool.allocate(4)
        pool.retain(ids[:2])
        stats = pool.stats()
        assert stats.num_used_blocks == 4
        assert stats.num_shared_blocks == 2
        assert stats.num_free_blocks == NUM_BLOCKS - 4
        assert abs(stats.utilization - 4 / NUM_BLOCKS) < 1e-9

    def test_migrate_returns_handle_or_says_not_supported(self) -> None:
        pool = self._pool()
        try:
            handle = pool.migrate(MigrationPlan())
        except NotSupportedError:
            return
        assert isinstance(handle, CompletionHandle)
        handle.wait()
        assert handle.done()

    def test_tiered_pool_moves_a_block_to_host_and_back_intact(self) -> None:
        """Pools with a host tier only (single-tier pools skip): a move frees the source, data survives."""
        pool = self._pool()
        if not pool.can_allocate(1, Tier.HOST):
            return
        (block,) = pool.allocate(1)
        key, value = pool.kv_tensors(0)
        key[block, 0, 0, 0] = 7.0
        value[block, 1, 0, 0] = 3.0
        out = pool.migrate(MigrationPlan((BlockMove(block, Tier.DEVICE, Tier.HOST, dst_block_id=0),)))
        out.wait()
        assert out.done()
        assert pool.num_free_blocks == NUM_BLOCKS and pool.ref_count(block) == 0
        last = NUM_BLOCKS - 1
        back = pool.migrate(MigrationPlan((BlockMove(0, Tier.HOST, Tier.DEVICE, dst_block_id=last),)))
        back.wait()
        assert back.done() and pool.ref_count(last) == 1
        key, value = pool.kv_tensors(0)
        assert float(key[last, 0, 0, 0]) == 7.0 and float(value[last, 1, 0, 0]) == 3.0
