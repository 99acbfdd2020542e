"""Both indexes: namespaces never share blocks, and concurrent callers keep the books straight."""

from __future__ import annotations

import random
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from sagellm.core.errors import KVBlockError
from sagellm.prefix_cache import HashChainPrefixIndex, RadixPrefixIndex
from sagellm.prefix_cache.radix_node import RadixNode

BS = 4
A = list(range(100, 112))
Index = HashChainPrefixIndex | RadixPrefixIndex
FACTORIES: list[Callable[[], Index]] = [
    lambda: HashChainPrefixIndex(block_size=BS),
    lambda: RadixPrefixIndex(block_size=BS),
]
IDS = ["hash_chain", "radix"]


@pytest.fixture(params=FACTORIES, ids=IDS)
def index(request: pytest.FixtureRequest) -> Index:
    return request.param()


# -- namespaces -------------------------------------------------------------------


def test_same_tokens_in_two_namespaces_get_their_own_blocks(index: Index) -> None:
    assert index.insert(A, [10, 11, 12], namespace="llama") == [10, 11, 12]
    assert index.insert(A, [20, 21, 22], namespace="llama+lora-1") == [20, 21, 22]
    assert index.lookup(A, namespace="llama").block_ids == (10, 11, 12)
    assert index.lookup(A, namespace="llama+lora-1").block_ids == (20, 21, 22)
    assert index.peek(A) == 0, "the default namespace is a namespace too"


def test_a_block_cannot_serve_two_namespaces(index: Index) -> None:
    index.insert(A, [10, 11, 12], namespace="a")
    with pytest.raises(KVBlockError, match="already caches"):
        index.insert(A, [10, 11, 12], namespace="b")
    assert len(index) == 3 and index.peek(A, namespace="b") == 0


def test_removal_in_one_namespace_leaves_the_other(index: Index) -> None:
    index.insert(A, [10, 11, 12], namespace="a")
    index.insert(A, [20, 21, 22], namespace="b")
    index.release([10, 11, 12])
    index.remove([10, 11, 12])
    assert index.peek(A, namespace="a") == 0
    assert index.lookup(A, namespace="b").block_ids == (20, 21, 22)


# -- threads ------------------------------------------------------------------------


def _placements(index: Index) -> list[int]:
    """Every block id as the structure stores it: a duplicate means a block sits in two places."""
    if isinstance(index, HashChainPrefixIndex):
        by_key = list(index._by_key.values())
        assert all(index._by_id[block.block_id] is block for block in by_key)
        return [block.block_id for block in index._by_id.values()]
    found: list[int] = []
    stack: list[RadixNode] = list(index._roots.values())
    while stack:
        node = stack.pop()
        assert len(node.data) == len(node.blocks) * BS * 4
        for offset, block in enumerate(node.blocks):
            if block is not None:
                assert block.node is node and block.offset == offset
                found.append(block.block_id)
        stack.extend(node.children.values())
    return found


def _check_books(index: Index) -> None:
    placed = _placements(index)
    assert len(placed) == len(set(placed)) == len(index)
    metas = [index.block_meta(block_id) for block_id in placed]
    assert all(meta is not None and meta.ref_count >= 0 for meta in metas)
    evictable = sum(1 for meta in metas if meta is not None and meta.ref_count == 0)
    assert index.stats().num_evictable_blocks == evictable


@pytest.fixture
def eager_thread_switches() -> Iterator[None]:
    """Switch threads every microsecond: without the lock this test fails on every run."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


@pytest.mark.usefixtures("eager_thread_switches")
def test_threads_hammering_every_call_keep_the_books(index: Index) -> None:
    systems = [list(range(1000 * s, 1000 * s + 8)) for s in range(1, 4)]
    start = threading.Barrier(4)

    def worker(number: int) -> int:
        rng = random.Random(number)
        start.wait()
        removed = 0
        for step in range(250):
            namespace = rng.choice(["", "lora"])
            tokens = rng.choice(systems) + [rng.randrange(4) for _ in range(rng.randrange(12))]
            hit = index.lookup(tokens, namespace)
            first = 100_000 * (number + 1) + 10 * step
            adopted = index.insert(tokens, list(range(first, first + len(tokens) // BS)), namespace)
            meta = index.block_meta(hit.block_ids[0]) if hit.block_ids else None
            assert meta is None or meta.ref_count >= 1, "our own reference is still there"
            index.release(list(hit.block_ids) + adopted)
            victims = [b for b in adopted + list(hit.block_ids) if index.is_evictable(b)]
            try:
                index.remove(victims[: rng.randrange(3)])
                removed += 1
            except KVBlockError:
                pass  # another thread took a reference in between: refused, nothing changed
        return removed

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = [future.result() for future in [pool.submit(worker, n) for n in range(4)]]
    assert sum(results) > 0
    _check_books(index)
    assert index.stats().num_evictable_blocks == len(index), "every reference was given back"
