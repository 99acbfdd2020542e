"""Allocation, reference counts, errors and metadata."""

from __future__ import annotations

import pytest
from kv_pool_helpers import small_pool

from sagellm.core.errors import KVBlockError, NotSupportedError, OutOfBlocksError
from sagellm.core.types import Tier
from sagellm.kv_pool import BlockAllocator


def test_out_of_blocks_is_atomic_and_says_how_many() -> None:
    pool = small_pool(num_blocks=8)
    held = pool.allocate(5)
    with pytest.raises(OutOfBlocksError, match="cannot allocate 4 KV blocks: only 3 of 8 are free"):
        pool.allocate(4)
    assert pool.num_free_blocks == 3
    assert sorted(held + pool.allocate(3)) == list(range(8))  # the 3 left were all still free


def test_out_of_blocks_in_copy_on_write_changes_nothing() -> None:
    pool = small_pool(num_blocks=2)
    a, b = pool.allocate(2)
    pool.retain([a])
    with pytest.raises(OutOfBlocksError):
        pool.copy_on_write(a)
    assert pool.ref_count(a) == 2 and pool.ref_count(b) == 1


def test_allocate_zero_and_negative() -> None:
    pool = small_pool()
    assert pool.allocate(0) == [] and pool.num_free_blocks == 8
    with pytest.raises(KVBlockError):
        pool.allocate(-1)
    assert not pool.can_allocate(-1)


@pytest.mark.parametrize("bad_id", [-1, 8, 1000])
def test_unknown_block_ids_raise(bad_id: int) -> None:
    pool = small_pool(num_blocks=8)
    for call in (pool.free, pool.retain, pool.touch):
        with pytest.raises(KVBlockError, match="unknown KV block id"):
            call([bad_id])
    with pytest.raises(KVBlockError):
        pool.ref_count(bad_id)
    with pytest.raises(KVBlockError):
        pool.block_meta(bad_id)


def test_double_free_raises_kv_block_error() -> None:
    pool = small_pool()
    (block,) = pool.allocate(1)
    pool.free([block])
    with pytest.raises(KVBlockError, match="double free"):
        pool.free([block])


def test_free_listing_a_block_more_often_than_its_refs_is_atomic() -> None:
    pool = small_pool()
    a, b = pool.allocate(2)
    with pytest.raises(KVBlockError, match="2 times"):
        pool.free([a, b, a])
    assert pool.ref_count(a) == 1 and pool.ref_count(b) == 1  # nothing was freed
    pool.retain([a])
    pool.free([a, a])  # two references, two frees: fine
    assert pool.ref_count(a) == 0


def test_retain_and_copy_on_write_of_free_block_raise() -> None:
    pool = small_pool()
    with pytest.raises(KVBlockError, match="not allocated"):
        pool.retain([0])
    with pytest.raises(KVBlockError, match="not allocated"):
        pool.copy_on_write(0)


def test_other_tiers_are_not_supported() -> None:
    pool = small_pool()
    assert not pool.can_allocate(1, Tier.HOST)
    with pytest.raises(NotSupportedError):
        pool.allocate(1, Tier.DISK)


def test_shared_block_count_follows_ref_transitions() -> None:
    pool = small_pool()
    a, b = pool.allocate(2)
    pool.retain([a, a, b])  # a: 3 refs, b: 2 refs
    assert pool.stats().num_shared_blocks == 2
    pool.free([a])
    assert pool.stats().num_shared_blocks == 2
    pool.free([a, b])
    assert pool.stats().num_shared_blocks == 0
    assert pool.ref_count(a) == 1 and pool.ref_count(b) == 1


def test_freed_blocks_are_reused_last_in_first_out() -> None:
    pool = small_pool()
    assert pool.allocate(3) == [0, 1, 2]
    pool.free([1])
    assert pool.allocate(2) == [1, 3]


def test_meta_tracks_creation_access_and_refs() -> None:
    now = [10.0]
    blocks = BlockAllocator(num_blocks=4, bytes_per_block=64, clock=lambda: now[0])
    (block,) = blocks.allocate(1)
    meta = blocks.meta(block)
    assert (meta.ref_count, meta.created_at, meta.last_access, meta.access_count) == (1, 10.0, 10.0, 1)
    assert meta.size_bytes == 64 and meta.tier == Tier.DEVICE
    now[0] = 12.5
    blocks.retain([block])
    blocks.touch([block])
    assert (meta.ref_count, meta.created_at, meta.last_access, meta.access_count) == (2, 10.0, 12.5, 3)
    meta.prefix_hash = 42
    blocks.free([block, block])
    now[0] = 20.0
    (again,) = blocks.allocate(1)
    assert again == block and meta.created_at == 20.0 and meta.access_count == 1 and meta.prefix_hash is None


def test_pool_meta_uses_monotonic_clock() -> None:
    pool = small_pool()
    (block,) = pool.allocate(1)
    first = pool.block_meta(block).last_access
    pool.touch([block])
    assert pool.block_meta(block).last_access >= first
    assert pool.block_meta(block).access_count == 2
