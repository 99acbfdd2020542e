"""The prefix-cache replay: exact LRU numbers on a hand-computed trace, Belady above every policy."""

from __future__ import annotations

import pytest

from sagellm.core.errors import ConfigError
from sagellm.core.types import BlockId, EvictionContext
from sagellm.eviction_policy import POLICIES, LRUEvictionPolicy, create_policy
from sagellm.eviction_policy.sim import (
    BeladyEvictionPolicy,
    FutureAccesses,
    PolicyContractError,
    PrefixCacheReplay,
    default_sizes,
    parse_sizes,
    policy_factories,
    run_sweep,
    synthetic_trace,
    trace_from_rows,
)

# capacity 3 blocks
#  t=0 [1 2]    miss miss                     cache 1 2       LRU order 1 2
#  t=1 [1 2 3]  hit hit miss                  cache 1 2 3     order 1 2 3
#  t=2 [4 5]    miss miss: evict 1, 2         cache 3 4 5
#  t=3 [1 2 3]  miss at 1: 1, 2 missing, 3 cached but unreachable (a miss, touched);
#               evict 2 with 1 2 3 pinned: 3 is skipped, 4 and 5 go   cache 1 2 3
# LRU: 2 hits of 10 lookups, 4 evictions. Belady at t=2 evicts the blocks needed last (3, then 2)
# and hits block 1 at t=3: 3 hits.
HAND = trace_from_rows(
    [
        {"timestamp": 0, "hash_ids": [1, 2]},
        {"timestamp": 1000, "hash_ids": [1, 2, 3]},
        {"timestamp": 2000, "hash_ids": [4, 5]},
        {"timestamp": 3000, "hash_ids": [1, 2, 3]},
    ],
    name="hand",
)


def test_lru_on_a_hand_computed_trace() -> None:
    result = PrefixCacheReplay(LRUEvictionPolicy(), 3, HAND.depths()).run(HAND)
    assert (result.hits, result.accesses, result.evictions) == (2, 10, 4)
    assert result.hit_ratio == pytest.approx(0.2)


def test_belady_on_the_hand_computed_trace() -> None:
    future = FutureAccesses(HAND)
    result = PrefixCacheReplay(BeladyEvictionPolicy(future), 3, HAND.depths(), future).run(HAND)
    assert (result.hits, result.evictions) == (3, 4)


def test_prefill_saved_weighs_deep_blocks_more() -> None:
    result = PrefixCacheReplay(LRUEvictionPolicy(), 3, HAND.depths(), depth_cost=1.0).run(HAND)
    # lookups cost (1+2) + (1+2+3) + (1+2) + (1+2+3) = 18; the hits were blocks at depth 0, 1 -> 1 + 2
    assert (result.prefill_cost, result.saved_cost) == (18.0, 3.0)
    assert result.saved_ratio == pytest.approx(3 / 18)


def test_belady_is_an_upper_bound_for_every_policy() -> None:
    trace = synthetic_trace(num_requests=300, num_sessions=40, seed=3)
    sweep = run_sweep(trace, default_sizes(trace.unique_blocks()), policy_factories(POLICIES), progress=False)
    for row in sweep.rows:
        optimum = row.results["belady"].hit_ratio
        assert all(r.hit_ratio <= optimum for r in row.results.values()), row.capacity
        assert optimum > 0
    assert sweep.policies == (*POLICIES, "belady")


def test_larger_caches_hit_more_and_an_infinite_one_hits_everything_reusable() -> None:
    trace = synthetic_trace(num_requests=200, seed=1)
    unique = trace.unique_blocks()
    ratios = [PrefixCacheReplay(LRUEvictionPolicy(), c, trace.depths()).run(trace).hit_ratio for c in (20, 100, unique)]
    assert ratios == sorted(ratios)
    assert ratios[-1] == pytest.approx(1 - unique / trace.num_accesses)


def test_a_request_larger_than_the_cache_caches_its_prefix_only() -> None:
    trace = trace_from_rows([{"timestamp": 0, "hash_ids": [1, 2, 3, 4]}, {"timestamp": 1, "hash_ids": [1, 2, 3, 4]}])
    result = PrefixCacheReplay(LRUEvictionPolicy(), 2, trace.depths()).run(trace)
    assert (result.hits, result.evictions) == (2, 0)


class GreedyPolicy(LRUEvictionPolicy):
    """Breaks the contract: names blocks it was told are in use."""

    def select_victims(self, context: EvictionContext) -> list[BlockId]:
        return self.recency_order()[: context.num_blocks]


def test_a_policy_that_evicts_pinned_blocks_is_caught() -> None:
    # the second prompt misses at 3 and holds block 1 further down its chain: 1 is pinned, and LRU's head
    trace = trace_from_rows([{"timestamp": 0, "hash_ids": [1, 2]}, {"timestamp": 1, "hash_ids": [3, 1]}])
    with pytest.raises(PolicyContractError, match="in use"):
        PrefixCacheReplay(GreedyPolicy(), 2, trace.depths()).run(trace)


def test_every_policy_gets_block_meta_with_depths() -> None:
    seen = []

    class Recording(LRUEvictionPolicy):
        def select_victims(self, context: EvictionContext) -> list[BlockId]:
            assert context.block_meta is not None
            seen.extend((b, context.block_meta(b).prefix_depth) for b in (1, 2, 3))  # type: ignore[union-attr]
            return super().select_victims(context)

    PrefixCacheReplay(Recording(), 3, HAND.depths()).run(HAND)
    assert seen[:3] == [(1, 0), (2, 1), (3, 2)]


def test_parse_sizes() -> None:
    assert parse_sizes(["1%", "50,10%"], 1000) == [10, 50, 100]
    assert default_sizes(1000) == [10, 20, 50, 100, 200, 400]
    for bad in (["x"], ["0"], ["0.01%"], [","]):
        with pytest.raises(ConfigError):
            parse_sizes(bad, 1000)


def test_policy_factories_check_names_and_options() -> None:
    assert set(policy_factories(["lru", "arc"], {"arc": {"capacity": 5}})) == {"lru", "arc"}
    with pytest.raises(ConfigError, match="unknown policy 'belady'"):
        policy_factories(["belady"])
    with pytest.raises(ConfigError, match="options for 's3fifo'"):
        policy_factories(["s3fifo"], {"s3fifo": {"ghost": 1}})
    with pytest.raises(ConfigError, match="ghost_ratio"):
        policy_factories(["s3fifo"], {"s3fifo": {"ghost_ratio": -1}})


def test_sweep_reports() -> None:
    trace = synthetic_trace(num_requests=100, seed=2)
    sweep = run_sweep(trace, [10, 40], policy_factories(["lru", "s3fifo"]), progress=False)
    data = sweep.to_json()
    assert data["unique_blocks"] == trace.unique_blocks() and len(data["rows"]) == 2
    assert set(data["rows"][0]["results"]) == {"lru", "s3fifo", "belady"}
    table = sweep.markdown()
    assert table.count("\n") == 4 and "| lru | s3fifo | belady |" in table and "vs lru" in table
    assert create_policy("lru").name == "lru"
