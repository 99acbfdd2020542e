"""Behaviour specific to HashChainPrefixIndex: collisions, orphans, rollback, threads."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

import pytest

from sagellm.core.errors import KVBlockError
from sagellm.prefix_cache import HashChainPrefixIndex

BS = 4
X = [1, 2, 3, 4, 5, 6, 7, 8]
Y = [9, 10, 11, 12, 5, 6, 7, 8]  # second block equals X's second block


def _constant_key(parent_key: bytes, block_tokens: bytes) -> bytes:
    return b"\0" * 8


def _parent_blind_key(parent_key: bytes, block_tokens: bytes) -> bytes:
    return block_tokens[:8]


class ConstantHashIndex(HashChainPrefixIndex):
    """Every block hashes to the same key: the worst possible hash."""

    _block_key = staticmethod(_constant_key)


class ParentBlindHashIndex(HashChainPrefixIndex):
    """Hashes only the block's own tokens: equal blocks at different prefixes collide."""

    _block_key = staticmethod(_parent_blind_key)


def _cached(index: HashChainPrefixIndex, tokens: list[int], ids: list[int]) -> None:
    index.release(index.insert(tokens, ids))


# -- collisions never hand out a wrong block ------------------------------


def test_constant_hash_only_costs_reuse() -> None:
    index = ConstantHashIndex(block_size=BS)
    assert index.insert(X, [10, 11]) == [10], "second block's key is taken: insertion stops"
    assert index.lookup(X).block_ids == (10,)
    assert index.lookup(Y).block_ids == (), "same key, different tokens: no match"
    assert index.stats().num_hash_collisions == 1


def test_parent_blind_hash_checks_the_parent() -> None:
    index = ParentBlindHashIndex(block_size=BS)
    _cached(index, X, [10, 11])
    assert index.insert(Y, [20, 21]) == [20]
    assert index.lookup(Y).block_ids == (20,), "block 11 follows a different prefix"
    assert index.lookup(X).block_ids == (10, 11)


def test_parent_blind_hash_with_orphan_is_not_relinked_to_another_prefix() -> None:
    index = ParentBlindHashIndex(block_size=BS)
    _cached(index, X, [10, 11])
    index.remove([10])  # 11 survives as an orphan of X's first block
    assert index.insert(Y, [20, 21]) == [20]
    assert index.lookup(Y).block_ids == (20,)


# -- orphans are found again when their prefix returns ---------------------


def test_orphan_relinks_when_same_prefix_is_recomputed() -> None:
    index = HashChainPrefixIndex(block_size=BS)
    tokens = list(range(100, 112))
    _cached(index, tokens, [10, 11, 12])
    index.remove([10])
    assert index.lookup(tokens).num_matched_tokens == 0, "lookup stops at the first missing block"
    assert 11 in index and 12 in index
    assert index.insert(tokens, [30, 31, 32]) == [30]
    hit = index.lookup(tokens)
    assert hit.block_ids == (30, 11, 12)


# -- misuse raises and changes nothing ------------------------------------


def test_block_id_cached_elsewhere_rolls_back_the_whole_insert() -> None:
    index = HashChainPrefixIndex(block_size=BS)
    _cached(index, X, [10, 11])
    with pytest.raises(KVBlockError, match="already caches"):
        index.insert([7] * 12, [20, 21, 10])
    assert len(index) == 2 and 20 not in index and 21 not in index


# -- threads ----------------------------------------------------------------


def test_concurrent_lookup_insert_release_keeps_counts_consistent() -> None:
    index = HashChainPrefixIndex(block_size=BS)
    system = list(range(1000, 1016))  # 4 shared blocks

    def engine(worker: int) -> None:
        rng = random.Random(worker)
        for step in range(300):
            tokens = system + [rng.randrange(50) for _ in range(8)]
            hit = index.lookup(tokens)
            first = 10_000 * (worker + 1) + 10 * step
            adopted = index.insert(tokens, list(range(first, first + 6)))
            index.release(list(hit.block_ids) + adopted)

    with ThreadPoolExecutor(max_workers=4) as pool:
        for future in [pool.submit(engine, worker) for worker in range(4)]:
            future.result()  # re-raises anything a worker thread hit
    stats = index.stats()
    assert stats.num_evictable_blocks == len(index) == stats.num_inserted_blocks
    assert all(index.is_evictable(meta_id) for meta_id in range(10_000, 50_000) if meta_id in index)
    assert index.peek(system) == 16
