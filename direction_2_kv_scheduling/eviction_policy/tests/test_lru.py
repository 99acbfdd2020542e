"""LRU ordering: victims oldest first, hooks refresh recency, in-use blocks are skipped."""

from __future__ import annotations

from sagellm.core.types import EvictionContext
from sagellm.eviction_policy import LRUEvictionPolicy


def _lru(blocks: range, **options: bool) -> LRUEvictionPolicy:
    policy = LRUEvictionPolicy(**options)
    for block in blocks:
        policy.on_insert(block)
    return policy


def _victims(policy: LRUEvictionPolicy, num_blocks: int, pinned: frozenset[int] = frozenset()) -> list[int]:
    return policy.select_victims(EvictionContext(num_blocks=num_blocks, is_evictable=lambda b: b not in pinned))


def test_victims_come_in_lru_order() -> None:
    assert _victims(_lru(range(6)), 3) == [0, 1, 2]


def test_access_refreshes_recency() -> None:
    policy = _lru(range(4))
    policy.on_access(0)
    policy.on_access(2)
    assert _victims(policy, 4) == [1, 3, 0, 2]


def test_reinsert_refreshes_recency() -> None:
    policy = _lru(range(3))
    policy.on_insert(0)
    assert policy.recency_order() == [1, 2, 0] and len(policy) == 3


def test_order_ignores_timestamps() -> None:
    """Hook order is recency: a late call with an old ``now`` still counts as most recent."""
    policy = LRUEvictionPolicy()
    policy.on_insert(1, now=50.0)
    policy.on_insert(2, now=10.0)
    assert _victims(policy, 1) == [1]


def test_in_use_blocks_are_skipped_and_promoted() -> None:
    policy = _lru(range(6))
    assert _victims(policy, 2, frozenset({0, 2})) == [1, 3]
    assert policy.recency_order() == [1, 3, 4, 5, 0, 2]


def test_without_promotion_in_use_blocks_keep_their_place() -> None:
    policy = _lru(range(6), promote_in_use=False)
    assert _victims(policy, 2, frozenset({0, 2})) == [1, 3]
    assert policy.recency_order() == list(range(6))


def test_fewer_victims_when_not_enough_are_evictable() -> None:
    policy = _lru(range(4))
    assert _victims(policy, 3, frozenset({0, 1, 2})) == [3]
    assert _victims(policy, 0) == [] and _victims(policy, -1) == []


def test_unknown_ids_are_ignored_by_access_and_remove() -> None:
    policy = _lru(range(2))
    policy.on_access(99)
    policy.on_remove(99)
    assert len(policy) == 2 and 99 not in policy and 1 in policy


def test_victims_are_kept_until_removed() -> None:
    policy = _lru(range(3))
    assert _victims(policy, 1) == [0]
    assert _victims(policy, 1) == [0], "selection alone changes nothing"
    policy.on_remove(0)
    assert _victims(policy, 1) == [1]


def test_tail_first_ranks_one_instant_in_reverse_call_order() -> None:
    """A prompt's blocks touched root to tail at one ``now``: the tail goes first, the root last."""
    policy = LRUEvictionPolicy(tail_first=True)
    for block in (1, 2, 3):
        policy.on_insert(block, now=5.0)
    policy.on_insert(4, now=6.0)
    assert _victims(policy, 4) == [3, 2, 1, 4]


def test_tail_first_needs_a_clock() -> None:
    """``now == 0`` means the caller has no clock: call order rules."""
    policy = _lru(range(3), tail_first=True)
    assert _victims(policy, 3) == [0, 1, 2]
