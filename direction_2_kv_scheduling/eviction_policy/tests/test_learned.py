"""The learned policy ranks by what a LifetimePredictor says, and teaches it from what really happened."""

from __future__ import annotations

import math

import pytest
from eviction_test_helpers import evict, insert, victims

from sagellm.core.protocols import LifetimePredictor
from sagellm.core.types import EvictionContext, KVBlockMeta
from sagellm.eviction_policy import LearnedEvictionPolicy


class ScriptedPredictor:
    """Answers a fixed wait per block id and records every observation."""

    def __init__(self, waits: dict[int, float] | None = None) -> None:
        self.waits = waits or {}
        self.asked: list[tuple[int, float, float]] = []  # (block, idle, now)
        self.observed: list[tuple[int, int, float | None]] = []  # (block, access_count, reused_after)

    def predict(self, block_meta: KVBlockMeta, now: float = 0.0) -> float:
        self.asked.append((block_meta.block_id, now - block_meta.last_access, now))
        return self.waits.get(block_meta.block_id, 1.0)

    def observe(self, block_meta: KVBlockMeta, reused_after: float | None) -> None:
        self.observed.append((block_meta.block_id, block_meta.access_count, reused_after))


def _policy(waits: dict[int, float], **options: float) -> tuple[LearnedEvictionPolicy, ScriptedPredictor]:
    predictor = ScriptedPredictor(waits)
    assert isinstance(predictor, LifetimePredictor)
    policy = LearnedEvictionPolicy(predictor=predictor, **options)  # type: ignore[arg-type]
    insert(policy, [0, 1], now=1.0)  # never reused: class 0
    insert(policy, [2, 3], now=2.0)
    for block in (2, 3):
        policy.on_access(block, now=3.0)  # reused: class 1
    return policy, predictor


def test_evicts_the_class_head_with_the_longest_predicted_wait() -> None:
    policy, predictor = _policy({1: 1.0, 3: 100.0})  # the heads (tail first within an instant): 1 and 3
    assert policy.reuse_class(0) == 0 and policy.reuse_class(3) == 1
    assert victims(policy, 1, now=10.0) == [3]
    assert sorted(b for b, _, _ in predictor.asked) == [1, 3], "only the class heads were asked"
    assert all(now == 10.0 for _, _, now in predictor.asked), "asked at the decision's time"
    policy.on_remove(3)
    predictor.waits[2] = 0.5
    assert victims(policy, 2, now=11.0) == [1, 0], "after 1 goes, 0 (wait 1.0) still beats 2 (0.5)"


def test_infinite_wait_goes_first_and_nan_last() -> None:
    policy, _ = _policy({1: math.nan, 3: math.inf, 2: 5.0})
    assert victims(policy, 3, now=10.0) == [3, 2, 1]


def test_hits_and_ghost_returns_teach_the_predictor() -> None:
    predictor = ScriptedPredictor()
    policy = LearnedEvictionPolicy(predictor=predictor, history_ratio=1.0)
    insert(policy, [7, 8], now=1.0)
    policy.on_access(7, now=4.0)
    assert predictor.observed == [(7, 0, 3.0)], "a hit: reused after 3 s, with the count before it"
    assert evict(policy, 1, now=5.0) == [8]
    policy.on_insert(8, now=9.0)  # back from the ghost history: a reuse the cache missed
    assert predictor.observed[-1] == (8, 0, 8.0)
    assert policy.reuse_class(8) == 1, "it keeps its history"


def test_history_overflow_reports_never_reused() -> None:
    predictor = ScriptedPredictor()
    policy = insert(LearnedEvictionPolicy(predictor=predictor, history_ratio=1.0), [1, 2], now=1.0)
    for block in (1, 2):
        policy.on_remove(block)
    assert predictor.observed == []
    insert(policy, [3, 4], now=2.0)  # capacity 2: history holds 2 records
    policy.on_remove(3)
    assert predictor.observed == [(1, 0, None)], "the oldest record fell out: not reused"


def test_in_use_blocks_are_skipped_and_refreshed() -> None:
    policy, predictor = _policy({})  # class 0, least recent first: [1, 0] (one instant, tail first)
    assert victims(policy, 1, pinned={1}, now=10.0) == [0]
    assert 1 not in {b for b, _, _ in predictor.asked}, "an in-use block is not a candidate"
    policy.on_remove(0)
    predictor.asked.clear()
    victims(policy, 1, now=12.0)
    assert (1, 2.0, 12.0) in predictor.asked, "in use at t=10 counts as a touch then"


def test_default_predictor_and_options() -> None:
    policy = insert(LearnedEvictionPolicy(), range(5), now=1.0)
    assert len(victims(policy, 3, now=2.0)) == 3 and len(policy) == 5
    assert 4 in policy and 9 not in policy
    policy.on_access(9)
    policy.on_remove(9)
    assert len(policy) == 5


@pytest.mark.parametrize("num_classes", [1, 3])
def test_class_count_caps_the_reuse_count(num_classes: int) -> None:
    policy = insert(LearnedEvictionPolicy(num_classes=num_classes), [1], now=1.0)
    for t in range(5):
        policy.on_access(1, now=2.0 + t)
    assert policy.reuse_class(1) == num_classes - 1 and policy.reuse_class(2) is None


def _crowded() -> LearnedEvictionPolicy:
    """Class 0: blocks 0..99 (0 least recent); class 1: block 500."""
    policy = LearnedEvictionPolicy(predictor=ScriptedPredictor({99: 1000.0, 500: 1.0}))
    for block in range(100):
        policy.on_insert(block, now=1.0 + block)
    policy.on_insert(500, now=200.0)
    policy.on_access(500, now=201.0)
    return policy


def test_a_class_crowded_with_in_use_blocks_rests_while_another_has_candidates() -> None:
    pinned = set(range(99))
    assert victims(_crowded(), 1, pinned=pinned, now=300.0) == [500], "class 0 gave up after 64 in-use blocks"
    assert victims(_crowded(), 1, pinned=pinned | {500}, now=300.0) == [99], "no other candidate: walked on"


def test_a_crowded_class_costs_fewer_look_ups_each_decision_and_recovers() -> None:
    policy, pinned = _crowded(), set(range(100))  # all of class 0 in use
    looked: list[int] = []

    def evictable(block: int) -> bool:
        looked.append(block)
        return block not in pinned

    def decide(now: float) -> list[int]:
        looked.clear()
        return policy.select_victims(EvictionContext(num_blocks=1, now=now, is_evictable=evictable))

    per_decision = []
    for step in range(8):
        assert decide(300.0 + step) == [500], "class 0 has no candidate"
        per_decision.append(len(looked))
    assert per_decision == [65, 33, 17, 9, 5, 3, 3, 3]  # in-use blocks met (halved down to 2 x victims), + block 500
    pinned.clear()  # the requests finished: class 0's blocks are candidates again
    assert decide(400.0)[0] in range(100), "class 0's head is a candidate again"
    pinned.update(range(50))
    decide(401.0)
    assert len(looked) > 2, "a class that yields a block gets a larger limit back"
