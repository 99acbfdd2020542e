"""sageLLM per-sequence API, utilisation/fragmentation figures and eviction callbacks."""

from __future__ import annotations

import pytest
from kv_pool_helpers import small_pool

from sagellm.core.errors import KVBlockError, OutOfBlocksError
from sagellm.core.types import Tier
from sagellm.kv_pool import blocks_for_tokens


@pytest.mark.parametrize(("tokens", "blocks"), [(0, 0), (1, 1), (4, 1), (5, 2), (16, 4), (17, 5)])
def test_blocks_for_tokens(tokens: int, blocks: int) -> None:
    assert blocks_for_tokens(tokens, 4) == blocks


def test_allocate_for_sequence_grows_and_returns_whole_table() -> None:
    pool = small_pool(num_blocks=8, block_size=4)
    table = pool.allocate_for_sequence("req-1", 10)  # 3 blocks
    assert len(table) == 3 and pool.num_free_blocks == 5
    assert pool.allocate_for_sequence("req-1", 12) == table  # still fits in 3 blocks
    grown = pool.allocate_for_sequence("req-1", 13)
    assert grown[:3] == table and len(grown) == 4
    assert pool.allocate_for_sequence("req-1", 2) == grown  # tables never shrink
    assert pool.block_table("req-1") == grown
    pool.release_sequence("req-1")
    assert pool.num_free_blocks == 8 and pool.stats().num_used_tokens == 0


def test_allocate_for_sequence_is_atomic() -> None:
    pool = small_pool(num_blocks=8, block_size=4)
    pool.allocate_for_sequence("a", 20)  # 5 blocks
    table_b = pool.allocate_for_sequence("b", 4)  # 1 block
    with pytest.raises(OutOfBlocksError):
        pool.allocate_for_sequence("b", 16)  # needs 3 more, 2 free
    assert pool.block_table("b") == table_b
    assert pool.num_free_blocks == 2 and pool.stats().num_used_tokens == 24


def test_release_unknown_sequence_raises() -> None:
    pool = small_pool()
    with pytest.raises(KVBlockError, match="unknown sequence"):
        pool.release_sequence("nope")
    with pytest.raises(KVBlockError):
        pool.allocate_for_sequence("x", -1)


def test_utilization_and_fragmentation_numbers() -> None:
    #   a: 10 tokens -> 3 blocks (12 slots), b: 5 tokens -> 2 blocks (8 slots)
    #   used 5 of 8 blocks; 15 of 20 slots hold tokens -> fragmentation 0.25
    pool = small_pool(num_blocks=8, block_size=4)
    pool.allocate_for_sequence("a", 10)
    pool.allocate_for_sequence("b", 5)
    stats = pool.stats()
    assert (stats.num_used_blocks, stats.num_used_tokens) == (5, 15)
    assert pool.get_utilization() == pytest.approx(5 / 8)
    assert pool.get_fragmentation() == pytest.approx(0.25)
    assert pool.get_utilization(Tier.HOST) == 0.0 and pool.get_fragmentation(Tier.DISK) == 0.0
    pool.allocate_for_sequence("b", 8)  # b fills its 2 blocks
    assert pool.get_fragmentation() == pytest.approx(1 - 18 / 20)
    pool.release_sequence("a")
    assert pool.get_utilization() == pytest.approx(2 / 8)
    assert pool.get_fragmentation() == 0.0


def test_eviction_callbacks_receive_reported_ids() -> None:
    pool = small_pool()
    seen: list[list[int]] = []
    also: list[list[int]] = []
    pool.register_eviction_callback(seen.append)
    pool.register_eviction_callback(also.append)
    ids = pool.allocate(2)
    pool.notify_evicted(ids)
    assert seen == [ids] and also == [ids]
    assert pool.ref_count(ids[0]) == 1  # a notification, not a free
