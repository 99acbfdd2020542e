"""S3-FIFO: the small queue filters one-hit wonders, hits earn the main queue, ghosts skip probation."""

from __future__ import annotations

from eviction_test_helpers import evict, insert, victims

from sagellm.eviction_policy import LRUEvictionPolicy, S3FIFOEvictionPolicy


def _one_hit_wonders(policy: S3FIFOEvictionPolicy | LRUEvictionPolicy) -> set[int]:
    """Blocks 0..4 are inserted and hit once; then 30 blocks that are never hit stream through 10 slots."""
    insert(policy, range(5))
    for block in range(5):
        policy.on_access(block)
    insert(policy, range(50, 55))
    survivors = set(range(5)) | set(range(50, 55))
    for block in range(100, 130):
        for gone in evict(policy, 1, pinned={block}):
            survivors.discard(gone)
        policy.on_insert(block)
        survivors.add(block)
    return survivors


def test_small_queue_filters_one_hit_wonders() -> None:
    policy = S3FIFOEvictionPolicy(capacity=10)
    assert set(range(5)) <= _one_hit_wonders(policy), "the hit blocks moved to M and stayed"
    assert policy.queues()["main"] == [0, 1, 2, 3, 4]
    assert not set(range(5)) & _one_hit_wonders(LRUEvictionPolicy()), "LRU lets the stream flush them"


def test_an_evicted_small_block_leaves_a_ghost_and_comes_back_to_main() -> None:
    policy = insert(S3FIFOEvictionPolicy(capacity=4), range(4))
    assert evict(policy, 1) == [0]
    assert policy.queues()["ghost"] == [0]
    policy.on_insert(0)
    assert policy.queues()["main"] == [0] and policy.queues()["ghost"] == []


def test_main_queue_gives_hit_blocks_another_round() -> None:
    policy = S3FIFOEvictionPolicy(capacity=4, small_ratio=0.25)
    insert(policy, [1, 2])
    for block in (1, 2):
        policy.on_access(block)
    insert(policy, [3, 4])
    assert evict(policy, 1) == [3], "1 and 2 were hit in S: promoted to M on the way"
    assert policy.queues()["main"] == [1, 2] and policy.queues()["small"] == [4]
    policy.on_access(1)  # hit again in M: it survives one pass
    assert evict(policy, 1) == [4]
    assert evict(policy, 1) == [2]
    assert policy.queues()["main"] == [1]


def test_chosen_victims_are_kept_until_removed_and_offered_first() -> None:
    policy = insert(S3FIFOEvictionPolicy(), range(5))
    assert victims(policy, 2) == [0, 1]
    assert len(policy) == 5 and victims(policy, 2) == [0, 1], "selection alone forgets nothing"
    policy.on_access(0)  # kept by the cache, then hit: it earned M
    assert policy.queues()["main"] == [0] and victims(policy, 1) == [1]


def test_in_use_block_at_the_small_head_moves_to_main() -> None:
    policy = insert(S3FIFOEvictionPolicy(), range(3))
    assert victims(policy, 1, pinned={0}) == [1]
    assert policy.queues()["main"] == [0]


def test_ghost_is_bounded() -> None:
    policy = insert(S3FIFOEvictionPolicy(capacity=10, ghost_ratio=0.5), range(10))
    for block in range(10, 40):
        evict(policy, 1)
        policy.on_insert(block)
    assert len(policy.queues()["ghost"]) <= 5
