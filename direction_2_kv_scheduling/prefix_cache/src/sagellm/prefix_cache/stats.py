"""Counters a prefix index exposes to the engine's metrics and benchmarks."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PrefixCacheStats:
    """A snapshot of the index; cheap to take, safe to hand to another thread.

    ``num_queried_tokens`` counts every token passed to ``lookup`` (also the
    partial trailing block), so ``hit_rate`` is the share of prompt tokens
    whose KV did not have to be computed, the figure dashboards expect.
    """

    block_size: int
    num_cached_blocks: int
    num_evictable_blocks: int
    num_lookups: int
    num_queried_tokens: int
    num_hit_tokens: int
    num_inserted_blocks: int
    num_hash_collisions: int

    @property
    def num_cached_tokens(self) -> int:
        return self.num_cached_blocks * self.block_size

    @property
    def hit_rate(self) -> float:
        return self.num_hit_tokens / self.num_queried_tokens if self.num_queried_tokens else 0.0
