"""Both indexes: the bookkeeping they share through RefCountedIndex, tested once for each.

References, evictability, removal, counters, configuration and argument
errors live in one base class; these tests pin its behaviour on both
structures, so a third index (or a change to the base) is checked the same way.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sagellm.core.config import PrefixCacheSection
from sagellm.core.errors import ConfigError, InvalidRequestError, KVBlockError
from sagellm.prefix_cache import HashChainPrefixIndex, RadixPrefixIndex

BS = 4
X = [1, 2, 3, 4, 5, 6, 7, 8]  # two full blocks
Index = HashChainPrefixIndex | RadixPrefixIndex
CLASSES: list[type[Index]] = [HashChainPrefixIndex, RadixPrefixIndex]
IDS = ["hash_chain", "radix"]


@pytest.fixture(params=CLASSES, ids=IDS)
def make(request: pytest.FixtureRequest) -> Callable[[], Index]:
    return lambda: request.param(block_size=BS)


# -- references ---------------------------------------------------------------------


def test_release_errors_are_atomic(make: Callable[[], Index]) -> None:
    index = make()
    index.insert(X, [10, 11])
    with pytest.raises(KVBlockError, match="not cached"):
        index.release([10, 99])
    with pytest.raises(KVBlockError, match="holds 1"):
        index.release([11, 11])
    assert not index.is_evictable(10) and not index.is_evictable(11)


def test_remove_refuses_blocks_in_use_and_ignores_unknown_ids(make: Callable[[], Index]) -> None:
    index = make()
    index.insert(X, [10, 11])
    index.release([11])
    with pytest.raises(KVBlockError, match="still referenced"):
        index.remove([11, 10])
    assert len(index) == 2
    index.remove([11, 404])
    assert 11 not in index and len(index) == 1


def test_block_meta_follows_the_references(make: Callable[[], Index]) -> None:
    index = make()
    index.insert(X, [10, 11])
    index.lookup(X)
    meta = index.block_meta(11)
    assert meta is not None and (meta.ref_count, meta.prefix_depth) == (2, 1)
    assert index.block_meta(99) is None


# -- counters -----------------------------------------------------------------------


def test_stats_count_hits_and_evictable_blocks(make: Callable[[], Index]) -> None:
    index = make()
    index.insert(X, [10, 11])
    index.lookup(X + [0, 0])  # 10 queried, 8 hit
    index.lookup([0] * 6)  # 6 queried, 0 hit
    stats = index.stats()
    assert (stats.num_lookups, stats.num_queried_tokens, stats.num_hit_tokens) == (2, 16, 8)
    assert stats.hit_rate == 0.5
    assert stats.num_cached_tokens == 8 and stats.num_inserted_blocks == 2
    assert stats.num_evictable_blocks == 0 and stats.num_hash_collisions == 0
    index.release([10, 11, 10, 11])
    assert index.stats().num_evictable_blocks == 2
    index.remove([11])
    assert index.stats().num_evictable_blocks == 1


def test_peek_leaves_counters_alone(make: Callable[[], Index]) -> None:
    index = make()
    index.insert(X, [10, 11])
    assert index.peek(X) == 8
    assert index.stats().num_lookups == 0


# -- configuration and arguments ----------------------------------------------------


@pytest.mark.parametrize("cls", CLASSES, ids=IDS)
def test_from_config_rejects_unknown_options(cls: type[Index]) -> None:
    assert cls.from_config(PrefixCacheSection(), block_size=32).block_size == 32
    with pytest.raises(ConfigError, match=f"{cls.implementation} takes no options"):
        cls.from_config(PrefixCacheSection(options={"typo": 1}), block_size=32)


@pytest.mark.parametrize("cls", CLASSES, ids=IDS)
@pytest.mark.parametrize("bad", [0, -4, 2.0, True])
def test_bad_block_size_is_a_config_error(cls: type[Index], bad: object) -> None:
    with pytest.raises(ConfigError):
        cls(block_size=bad)  # type: ignore[arg-type]


def test_too_few_block_ids_is_an_invalid_request(make: Callable[[], Index]) -> None:
    index = make()
    with pytest.raises(InvalidRequestError, match="one block id per full block"):
        index.insert(list(range(12)), [1, 2])
    assert len(index) == 0


def test_negative_token_is_an_invalid_request(make: Callable[[], Index]) -> None:
    with pytest.raises(InvalidRequestError):
        make().insert([1, 2, 3, -1], [0])


def test_duplicate_ids_in_one_insert_are_refused(make: Callable[[], Index]) -> None:
    index = make()
    with pytest.raises(KVBlockError, match="already cache"):
        index.insert(list(range(8)), [5, 5])
    assert len(index) == 0
