"""GDSF: hits weighted by recompute cost, cost from prefix depth, a prompt's prefix kept as a whole."""

from __future__ import annotations

import random

import pytest
from eviction_test_helpers import insert, victims

from sagellm.core.types import BlockId, EvictionContext, KVBlockMeta
from sagellm.eviction_policy import GDSFEvictionPolicy, LFUEvictionPolicy

DEPTHS = {10: 0, 11: 1, 12: 2, 20: 40, 30: 0}


def _meta(block_id: BlockId) -> KVBlockMeta | None:
    depth = DEPTHS.get(block_id)
    return None if depth is None else KVBlockMeta(block_id=block_id, prefix_depth=depth)


def test_deep_expensive_chain_outlives_a_short_one() -> None:
    policy = insert(GDSFEvictionPolicy(), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], now=1.0)  # one long prompt
    insert(policy, [50, 51], now=2.0)  # a newer, short one
    assert victims(policy, 4) == [51, 50, 9, 8], "short chain first, then the long one from its tail"
    assert policy.worth(0) == pytest.approx(1.18) and policy.worth(50) == pytest.approx(1.02)
    lfu = insert(LFUEvictionPolicy(), range(10), now=1.0)
    insert(lfu, [50, 51], now=2.0)
    assert victims(lfu, 2) == [9, 8], "LFU only sees equal hits: oldest instant first"


def test_depth_comes_from_block_meta_and_the_segment_takes_its_deepest() -> None:
    policy = GDSFEvictionPolicy(block_meta=_meta)
    insert(policy, [20], now=1.0)  # depth 40 alone
    insert(policy, [10, 11, 12], now=2.0)  # depths 0..2
    insert(policy, [30], now=3.0)  # depth 0
    assert policy.worth(20) == pytest.approx(1.8) and policy.worth(10) == pytest.approx(1.04)
    assert victims(policy, 5) == [30, 12, 11, 10, 20]


def test_meta_lookup_of_the_latest_decision_is_used_for_later_segments() -> None:
    policy = insert(GDSFEvictionPolicy(), [30], now=1.0)
    policy.select_victims(EvictionContext(num_blocks=0, now=1.5, block_meta=_meta))
    insert(policy, [20], now=2.0)
    insert(policy, [99], now=3.0)  # unknown to the lookup: its position, 0
    assert policy.worth(20) == pytest.approx(1.8) and policy.worth(99) == 1.0


def test_hits_count_times_worth() -> None:
    policy = GDSFEvictionPolicy(block_meta=_meta)
    insert(policy, [20], now=1.0)  # worth 1.8, one hit -> 1.8
    insert(policy, [30], now=2.0)
    policy.on_access(30, now=3.0)
    policy.on_access(30, now=4.0)  # worth 1, three hits -> 3
    assert victims(policy, 2) == [20, 30]


def test_without_a_clock_every_hook_is_its_own_segment() -> None:
    policy = insert(GDSFEvictionPolicy(), range(4))
    assert [policy.worth(b) for b in range(4)] == [1.0] * 4
    assert victims(policy, 4) == [0, 1, 2, 3]


def test_aging_and_removal() -> None:
    policy = insert(GDSFEvictionPolicy(depth_cost=0.0), [1, 2], now=1.0)
    policy.on_access(1, now=2.0)
    assert victims(policy, 1) == [2] and policy.clock == 1.0
    policy.on_remove(2)
    assert len(policy) == 1 and 2 not in policy and victims(policy, 2) == [1]


def _hit_raised_by_its_segment(end_segment_by_hook: bool) -> list[BlockId]:
    """Block 30 is hit in the same instant as deep block 20: that instant's worth (1.8) lifts its key to 3.6."""
    policy = GDSFEvictionPolicy(block_meta=_meta)
    insert(policy, [30], now=1.0)  # worth 1, key 1
    insert(policy, [99], now=2.0)  # worth 1, key 1
    insert(policy, [98], now=3.0)
    policy.on_access(98, now=4.0)
    policy.on_access(98, now=5.0)  # three hits at worth 1: key 3
    policy.on_access(30, now=6.0)  # ranked at once at a lower bound, 2 x 1.0 ...
    policy.on_insert(20, now=6.0)  # ... until the instant ends: depth 40 -> worth 1.8, key 3.6
    if end_segment_by_hook:
        policy.on_access(99, now=7.0)  # 99: key 2
    return victims(policy, 4)


def test_a_hit_gets_its_segments_worth_when_a_hook_ends_the_segment() -> None:
    assert _hit_raised_by_its_segment(end_segment_by_hook=True) == [20, 99, 98, 30]


def test_a_hit_gets_its_segments_worth_when_a_decision_ends_the_segment() -> None:
    # The decision only settles the segment's worth; 30's key is raised when its entry surfaces.
    assert _hit_raised_by_its_segment(end_segment_by_hook=False) == [99, 20, 98, 30]


def test_a_block_inserted_and_hit_in_one_instant_is_ranked_once_with_both_hits() -> None:
    policy = GDSFEvictionPolicy(depth_cost=0.0)
    insert(policy, [1], now=1.0)
    policy.on_access(1, now=1.0)  # two hits: key 2
    insert(policy, [2], now=2.0)  # key 1
    assert victims(policy, 2) == [2, 1] and policy.frequency(1) == 2


def test_removing_a_block_of_the_open_segment() -> None:
    policy = insert(GDSFEvictionPolicy(), [1, 2, 3], now=1.0)
    policy.on_remove(3)
    assert 3 not in policy and victims(policy, 3) == [2, 1]
    assert policy.worth(1) == pytest.approx(1.02)  # the segment is two blocks long now


@pytest.mark.parametrize("make", [LFUEvictionPolicy, GDSFEvictionPolicy])
def test_tidying_in_the_hooks_changes_no_victim(make: type[LFUEvictionPolicy]) -> None:
    """Hooks fix lagging heap entries early; the victims must be those of fixing them only in decisions."""
    rng = random.Random(3)
    tidy, lazy = make(), make()
    lazy._tidy = lambda: None  # type: ignore[method-assign]
    for block in range(300):
        for policy in (tidy, lazy):
            policy.on_insert(block, now=1.0 + block // 8)
    for step in range(400):
        now = 100.0 + step
        pinned, wanted = set(rng.sample(range(300), 60)), rng.choice([1, 1, 4])
        chosen = [victims(policy, wanted, pinned=pinned, now=now) for policy in (tidy, lazy)]
        assert chosen[0] == chosen[1], step
        hits = rng.sample(range(300), 6)
        for policy in (tidy, lazy):
            for block in chosen[0]:
                policy.on_remove(block)
                policy.on_insert(block, now)
            for block in hits:
                policy.on_access(block, now)
