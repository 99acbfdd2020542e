"""Tail first within an instant: reverse call order among blocks touched at one ``now``."""

from __future__ import annotations

from collections import OrderedDict

from sagellm.eviction_policy.instant_order import InstantBatch, TouchOrder


def test_touch_numbers_rise_across_instants_and_fall_within_one() -> None:
    order = TouchOrder()
    a, b, c = (order.next(5.0) for _ in range(3))
    d = order.next(6.0)
    assert c < b < a < d


def test_without_clock_or_when_disabled_numbers_follow_calls() -> None:
    for order, now in ((TouchOrder(), 0.0), (TouchOrder(tail_first=False), 5.0)):
        numbers = [order.next(now) for _ in range(3)]
        assert numbers == sorted(numbers)


def test_batch_reorders_the_instant_when_it_ends() -> None:
    queue: OrderedDict[int, None] = OrderedDict.fromkeys([9])
    batch = InstantBatch()
    for block in (1, 2, 3):
        batch.touch(queue, block, 5.0)
    assert list(queue) == [9, 1, 2, 3], "nothing moves until the instant ends"
    batch.touch(queue, 4, 6.0)
    assert list(queue) == [9, 3, 2, 1, 4]
    batch.touch(queue, 9, 6.0)
    batch.flush()
    assert list(queue) == [3, 2, 1, 9, 4]


def test_batch_follows_blocks_that_moved_or_left() -> None:
    first: OrderedDict[int, None] = OrderedDict()
    second: OrderedDict[int, None] = OrderedDict()
    batch = InstantBatch()
    batch.touch(first, 1, 5.0)
    batch.touch(first, 2, 5.0)
    batch.touch(first, 3, 5.0)
    del first[2]
    batch.touch(second, 2, 5.0)
    del first[3]
    batch.flush()
    assert list(first) == [1] and list(second) == [2]
