"""ARC: ghost hits move the recency/frequency balance, and a scan cannot flush frequently used blocks."""

from __future__ import annotations

from eviction_test_helpers import evict, insert, victims

from sagellm.eviction_policy import ARCEvictionPolicy, LRUEvictionPolicy


def test_hit_moves_a_block_from_t1_to_t2() -> None:
    policy = insert(ARCEvictionPolicy(), range(4))
    policy.on_access(2)
    assert policy.lists() == {"t1": [0, 1, 3], "t2": [2], "b1": [], "b2": []}


def test_ghost_hits_adapt_the_target_between_recency_and_frequency() -> None:
    policy = insert(ARCEvictionPolicy(capacity=4), range(1, 5))
    policy.on_access(3)
    policy.on_access(4)  # T1 = [1, 2], T2 = [3, 4], p = 0
    assert evict(policy, 1) == [1], "T1 is larger than its target: its LRU block goes"
    assert policy.lists()["b1"] == [1]
    policy.on_insert(1)  # a B1 ghost: recency would have kept it
    assert policy.target_recent == 1.0 and policy.lists()["t2"] == [3, 4, 1]
    assert evict(policy, 1) == [3], "T1 (1 block) is within its target: T2's LRU block goes"
    policy.on_insert(3)  # a B2 ghost: frequency would have kept it
    assert policy.target_recent == 0.0 and policy.lists()["t2"] == [4, 1, 3]


def _scan(policy: ARCEvictionPolicy | LRUEvictionPolicy) -> set[int]:
    """Blocks 0 and 1 are hit twice; then 20 one-time blocks stream through a 4-block cache."""
    insert(policy, [0, 1])
    policy.on_access(0)
    policy.on_access(1)
    insert(policy, [2, 3])
    survivors = {0, 1, 2, 3}
    for block in range(100, 120):
        for gone in evict(policy, 1, pinned={block}):
            survivors.discard(gone)
        policy.on_insert(block)
        survivors.add(block)
    return survivors


def test_a_scan_does_not_flush_frequent_blocks() -> None:
    assert {0, 1} <= _scan(ARCEvictionPolicy())
    assert not {0, 1} & _scan(LRUEvictionPolicy()), "LRU loses them"


def test_in_use_block_in_t1_counts_as_hit() -> None:
    policy = insert(ARCEvictionPolicy(), range(3))
    assert victims(policy, 1, pinned={0}) == [1]
    assert policy.lists()["t2"] == [0]


def test_ghosts_are_bounded_by_the_capacity() -> None:
    policy = insert(ARCEvictionPolicy(capacity=3), range(3))
    for block in range(3, 30):
        evict(policy, 1)
        policy.on_insert(block)
    lists = policy.lists()
    assert len(lists["t1"]) + len(lists["b1"]) <= 3
    assert sum(len(v) for v in lists.values()) <= 6
