"""Behaviour specific to HashChainPrefixIndex: collisions, orphans, errors, threads, counters."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

import pytest

from sagellm.core.errors import ConfigError, InvalidRequestError, KVBlockError
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


def test_too_few_block_ids_is_an_invalid_request() -> None:
    index = HashChainPrefixIndex(block_size=BS)
    with pytest.raises(InvalidRequestError, match="one block id per full block"):
        index.insert(list(range(12)), [1, 2])
    assert len(index) == 0


def test_bad_block_size_is_a_config_error() -> None:
    for bad in (0, -4, 2.0, True):
        with pytest.raises(ConfigError):
            HashChainPrefixIndex(block_size=bad)  # type: ignore[arg-type]


def test_negative_token_is_an_invalid_request() -> None:
    with pytest.raises(InvalidRequestError):
        HashChainPrefixIndex(block_size=BS).insert([1, 2, 3, -1], [0])


def test_block_id_cached_elsewhere_rolls_back_the_whole_insert() -> None:
    index = HashChainPrefixIndex(block_size=BS)
    _cached(index, X, [10, 11])
    with pytest.raises(KVBlockError, match="already caches"):
        index.insert([7] * 12, [20, 21, 10])
    assert len(index) == 2 and 20 not in index and 21 not in index


def test_duplicate_ids_in_one_insert_are_refused() -> None:
    index = HashChainPrefixIndex(block_size=BS)
    with pytest.raises(KVBlockError):
        index.insert(list(range(8)), [5, 5])
    assert len(index) == 0


def test_release_errors_are_atomic() -> None:
    index = HashChainPrefixIndex(block_size=BS)
    index.insert(X, [10, 11])
    with pytest.raises(KVBlockError, match="not cached"):
        index.release([10, 99])
    with pytest.raises(KVBlockError, match="holds 1"):
        index.release([11, 11])
    assert not index.is_evictable(10) and not index.is_evictable(11)


def test_remove_refuses_blocks_in_use_and_ignores_unknown_ids() -> None:
    index = HashChainPrefixIndex(block_size=BS)
    index.insert(X, [10, 11])
    index.release([11])
    with pytest.raises(KVBlockError, match="still referenced"):
        index.remove([11, 10])
    assert len(index) == 2
    index.remove([11, 404])
    assert 11 not in index and len(index) == 1


# -- counters and config ----------------------------------------------------


def test_stats_count_hits_and_evictable_blocks() -> None:
    index = HashChainPrefixIndex(block_size=BS)
    index.insert(X, [10, 11])
    index.lookup(X + [0, 0])  # 10 queried, 8 hit
    index.lookup([0] * 6)  # 6 queried, 0 hit
    stats = index.stats()
    assert (stats.num_lookups, stats.num_queried_tokens, stats.num_hit_tokens) == (2, 16, 8)
    assert stats.hit_rate == 0.5
    assert stats.num_cached_tokens == 8 and stats.num_inserted_blocks == 2
    assert stats.num_evictable_blocks == 0
    index.release([10, 11, 10, 11])
    assert index.stats().num_evictable_blocks == 2
    index.remove([11])
    assert index.stats().num_evictable_blocks == 1


def test_peek_leaves_counters_alone() -> None:
    index = HashChainPrefixIndex(block_size=BS)
    index.insert(X, [10, 11])
    assert index.peek(X) == 8
    assert index.stats().num_lookups == 0


def test_from_config_rejects_unknown_options() -> None:
    from sagellm.core.config import PrefixCacheSection

    assert HashChainPrefixIndex.from_config(PrefixCacheSection(), block_size=32).block_size == 32
    with pytest.raises(ConfigError):
        HashChainPrefixIndex.from_config(PrefixCacheSection(options={"typo": 1}), block_size=32)


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
