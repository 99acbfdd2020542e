"""LazyHeap: smallest key first, ties by order, stale entries skipped, raised keys fixed when they surface."""

from __future__ import annotations

from sagellm.eviction_policy.lazy_heap import LazyHeap


def _drain(heap: LazyHeap) -> list[int]:
    out = []
    while (entry := heap.pop()) is not None:
        out.append(entry[2])
    return out


def test_smallest_key_first_ties_by_order() -> None:
    heap = LazyHeap()
    for block, key, order in [(1, 5.0, 3), (2, 1.0, 9), (3, 5.0, 1), (4, 2.0, 2)]:
        heap.push(block, key, order)
    assert _drain(heap) == [2, 4, 3, 1]


def test_push_rekeys_and_discard_forgets() -> None:
    heap = LazyHeap()
    for block in range(5):
        heap.push(block, float(block))
    heap.push(0, 10.0)
    heap.push(4, -1.0)
    heap.discard(2)
    heap.discard(99)
    assert len(heap) == 4 and 2 not in heap and heap.key(0) == 10.0
    assert _drain(heap) == [4, 1, 3, 0]


def test_raised_keys_are_fixed_when_they_surface() -> None:
    heap = LazyHeap()
    for block in range(4):
        heap.push(block, 1.0, order=block)
    heap.raise_key(0, 3.0, order=10)
    heap.raise_key(1, 1.0, order=11)  # same key, newer touch: behind 2 and 3
    assert heap.key(0) == 3.0
    assert _drain(heap) == [2, 3, 1, 0]


def test_restore_puts_a_popped_entry_back_unchanged() -> None:
    heap = LazyHeap()
    heap.push(1, 1.0, order=1)
    heap.push(2, 2.0, order=2)
    entry = heap.pop()
    assert entry == (1.0, 1, 1) and 1 not in heap
    heap.restore(entry)
    assert _drain(heap) == [1, 2]


def test_compaction_keeps_order_and_bounds_memory() -> None:
    heap = LazyHeap()
    for round_ in range(5):
        for block in range(1000):
            heap.push(block, float(round_ * 1000 + (999 - block)))
    assert len(heap._heap) <= 2 * len(heap) + 1024
    assert _drain(heap) == list(range(999, -1, -1))


def test_raise_key_may_keep_the_current_order() -> None:
    heap = LazyHeap()
    heap.push(1, 1.0, 5)
    heap.push(2, 2.0, 6)
    heap.raise_key(1, 3.0)
    assert heap.key(1) == 3.0 and _drain(heap) == [2, 1]


def test_settle_raises_keys_that_were_lower_bounds_as_they_surface() -> None:
    heap = LazyHeap()
    for block, key in ((1, 1.0), (2, 2.0), (3, 3.0)):
        heap.push(block, key, block)
    final = {1: 2.5}  # block 1 was ranked at a lower bound; its real key is 2.5
    settled: list[int] = []

    def settle(block: int, key: float) -> float:
        settled.append(block)
        return max(key, final.pop(block, key))

    popped = [heap.pop(settle) for _ in range(3)]
    assert [entry[2] for entry in popped if entry] == [2, 1, 3]
    assert popped[1] == (2.5, 1, 1) and settled.count(1) == 2  # settled, re-inserted, then taken as is


def test_top_fixes_what_lies_ahead_and_leaves_the_smallest_in_place() -> None:
    heap = LazyHeap()
    for block in range(4):
        heap.push(block, float(block))
    heap.raise_key(0, 10.0)  # behind: fixed on the way
    heap.discard(1)  # stale: dropped on the way
    assert heap.top() == (2.0, 2, 2)
    assert heap.top() == (2.0, 2, 2) and 2 in heap and len(heap) == 3, "top does not remove"
    assert _drain(heap) == [2, 3, 0]
    assert heap.top() is None


def test_tidy_looks_at_no_more_entries_than_its_budget() -> None:
    heap = LazyHeap()
    for block in range(5):
        heap.push(block, float(block))
    for block in range(3):
        heap.raise_key(block, 10.0 + block)  # three lagging entries on top
    looked: list[int] = []

    def settle(block: int, key: float) -> float:
        looked.append(block)
        return key

    heap.tidy(settle, budget=2)
    assert looked == [0, 1], "two looks, two entries moved"
    heap.tidy(settle, budget=2)
    assert looked == [0, 1, 2, 3], "the third moved, then an up-to-date top: done"
    looked.clear()
    assert heap.top(settle) == (3.0, 3, 3) and looked == [3], "nothing left to fix"
