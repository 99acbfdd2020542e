"""The engine-facing forms of migrate: swap a sequence out and in, demote and promote cached blocks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from kv_pool_helpers import fill_random, tiered_pool

from sagellm.core.errors import KVBlockError
from sagellm.core.types import Tier
from sagellm.kv_pool import CompletedHandle, PagedKVPool


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[PagedKVPool]:
    with tiered_pool(num_blocks=8, host_blocks=4, disk_blocks=8, disk_dir=str(tmp_path)) as tiered:
        yield tiered


def test_swap_out_and_in_returns_new_device_ids_with_the_data(pool: PagedKVPool) -> None:
    table = pool.allocate(3)
    data = [fill_random(pool, b) for b in table]
    out = pool.swap_out(table)
    out.wait()
    assert pool.num_free_blocks == 8  # the device blocks are free for other sequences
    pool.allocate(5)  # ... which take them
    back = pool.swap_in(out.dst_block_ids)
    back.wait()
    new_table = back.dst_block_ids
    assert len(new_table) == 3 and set(new_table) == {5, 6, 7}
    assert all(torch.equal(pool.block_data(b), d) for b, d in zip(new_table, data))
    assert pool.stats().tiers[1].num_used_blocks == 0


def test_shared_block_swap_out_leaves_the_other_owner_its_block(pool: PagedKVPool) -> None:
    (block,) = pool.allocate(1)
    data = fill_random(pool, block)
    pool.retain([block])  # a prefix-cache reference
    out = pool.swap_out([block])
    out.wait()
    assert pool.ref_count(block) == 1 and torch.equal(pool.block_data(block), data)
    back = pool.swap_in(out.dst_block_ids)
    back.wait()
    assert back.dst_block_ids != [block] and torch.equal(pool.block_data(back.dst_block_ids[0]), data)


def test_demote_prefers_host_then_disk_and_promote_brings_blocks_back(pool: PagedKVPool) -> None:
    cached = pool.allocate(6)
    data = {b: fill_random(pool, b) for b in cached}
    to_host = pool.demote(cached[:4])
    to_host.wait()
    to_disk = pool.demote(cached[4:])  # host is full now
    to_disk.wait()
    assert [m.dst_tier for m in to_host.moves] == [Tier.HOST] * 4
    assert [m.dst_tier for m in to_disk.moves] == [Tier.DISK] * 2
    further = pool.demote(to_host.dst_block_ids[:1], src_tier=Tier.HOST)  # host -> disk
    further.wait()
    assert further.moves[0].dst_tier is Tier.DISK
    hit = pool.promote(to_disk.dst_block_ids, Tier.DISK)
    hit.wait()
    for old, new in zip(cached[4:], hit.dst_block_ids):
        assert torch.equal(pool.block_data(new), data[old])
    assert [u.num_used_blocks for u in pool.stats().tiers] == [2, 3, 1]


def test_sequence_swap_keeps_its_table_and_token_accounting(pool: PagedKVPool) -> None:
    table = pool.allocate_for_sequence("req", 10)  # 3 blocks, 10 tokens
    data = [fill_random(pool, b) for b in table]
    assert pool.stats().num_used_tokens == 10
    out = pool.swap_out_sequence("req")
    assert pool.block_table("req") == out.dst_block_ids and pool.sequence_tier("req") is Tier.HOST
    out.wait()
    assert pool.stats().num_used_tokens == 0 and pool.num_free_blocks == 8
    with pytest.raises(KVBlockError, match="swapped out to the host tier"):
        pool.allocate_for_sequence("req", 20)
    with pytest.raises(KVBlockError, match="already in the host tier"):
        pool.swap_out_sequence("req")
    back = pool.swap_in_sequence("req")
    back.wait()
    table = pool.block_table("req")
    assert table == back.dst_block_ids and pool.sequence_tier("req") is Tier.DEVICE
    assert all(torch.equal(pool.block_data(b), d) for b, d in zip(table, data))
    assert pool.stats().num_used_tokens == 10
    assert len(pool.allocate_for_sequence("req", 13)) == 4  # grows again on the device


def test_release_of_a_swapped_out_sequence_frees_its_host_blocks(pool: PagedKVPool) -> None:
    pool.allocate_for_sequence("req", 8)
    pool.swap_out_sequence("req", Tier.DISK).wait()
    pool.release_sequence("req")
    assert [u.num_used_blocks for u in pool.stats().tiers] == [0, 0, 0]
    assert pool.stats().num_used_tokens == 0
    pool.allocate_for_sequence("empty", 0)
    assert isinstance(pool.swap_out_sequence("empty"), CompletedHandle)
    assert pool.sequence_tier("empty") is Tier.HOST
