"""LFU with dynamic aging: frequency first, recency among equals, and hot blocks of the past let go."""

from __future__ import annotations

from eviction_test_helpers import evict, insert, victims

from sagellm.eviction_policy import LFUEvictionPolicy


def _lfu(**options: bool) -> LFUEvictionPolicy:
    policy = LFUEvictionPolicy(**options)
    for t, block in enumerate(range(4)):
        policy.on_insert(block, now=1.0 + t)
    return policy


def test_fewest_hits_go_first_and_ties_go_oldest_first() -> None:
    policy = _lfu()
    policy.on_access(0, now=10.0)
    policy.on_access(0, now=11.0)
    policy.on_access(2, now=12.0)
    assert victims(policy, 4) == [1, 3, 2, 0]
    assert policy.frequency(0) == 3 and policy.frequency(99) == 0


def test_one_instant_goes_tail_first() -> None:
    policy = insert(LFUEvictionPolicy(), [7, 8, 9], now=3.0)
    assert victims(policy, 3) == [9, 8, 7]
    assert victims(insert(LFUEvictionPolicy(tail_first=False), [7, 8, 9], now=3.0), 3) == [7, 8, 9]


def _stream_past_a_hot_block(policy: LFUEvictionPolicy, steps: int) -> list[int]:
    """Block 0 is hit 5 times, then new blocks arrive one by one into a full 2-block cache."""
    policy.on_insert(0, now=1.0)
    for t in range(5):
        policy.on_access(0, now=2.0 + t)
    policy.on_insert(1, now=10.0)
    evicted = []
    for step in range(steps):
        newcomer = 100 + step
        policy.on_insert(newcomer, now=20.0 + step)
        evicted += evict(policy, 1, pinned={newcomer})
    return evicted


def test_aging_lets_an_old_hot_block_go() -> None:
    policy = LFUEvictionPolicy()
    evicted = _stream_past_a_hot_block(policy, steps=20)
    assert 0 in evicted, "the clock rose past block 0's six hits"
    assert evicted.index(0) >= 4, "but only after several newcomers went before it"
    assert policy.clock > 6


def test_without_aging_a_hot_block_stays_forever() -> None:
    policy = LFUEvictionPolicy(aging=False)
    assert 0 not in _stream_past_a_hot_block(policy, steps=20)
    assert policy.clock == 0


def test_in_use_blocks_are_skipped_and_move_behind_their_equals() -> None:
    policy = _lfu()
    assert victims(policy, 1, pinned={0}) == [1]
    policy.on_remove(1)
    assert victims(policy, 3) == [2, 3, 0], "block 0 was in use: as fresh as a hit, without the count"


def test_untracked_ids_are_ignored() -> None:
    policy = _lfu()
    policy.on_access(42)
    policy.on_remove(42)
    assert len(policy) == 4 and 42 not in policy and 3 in policy
