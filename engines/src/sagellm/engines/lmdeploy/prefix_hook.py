"""A sageLLM PrefixIndex behind LMDeploy's PrefixReuseHook (patch 0002), kept in step by patch 0001's callback.

Who owns what: LMDeploy's ``BlockTrie`` owns every cached block (it holds
the reference and frees it); the sageLLM index is the *lookup structure*
that proposes which trie blocks continue a sequence, and the trie verifies
each proposal. So the index never holds a reference for long: ``lookup``'s
and ``insert``'s references are given back at once, every indexed block is
evictable as far as the index knows, and the trie's ``'prefix'`` eviction
callback removes blocks from the index before they are freed::

    trie.match(seq)    -> hook.lookup(seq, n)      index.lookup(tokens[:-1]) -> blocks past n (release at once)
    trie.allocate(seq) -> hook.store(seq, n, b)    index.insert(tokens, chain ids) (release what it adopted)
    trie.evict(k)      -> callback(blocks,'prefix') index.remove(blocks); the policy forgets them

The last token is left out of the lookup: the trie always leaves one token
to compute (its logits sample the next one), as sageLLM's engine does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from sagellm.core.protocols import PrefixIndex
from sagellm.engines.lmdeploy.eviction_feed import PolicyFeed
from sagellm.engines.lmdeploy.translate import LMDeploySequence


class IndexPrefixHook:
    """LMDeploy's ``PrefixReuseHook`` (duck-typed: the trie calls ``lookup`` and ``store``) over a PrefixIndex."""

    def __init__(self, index: PrefixIndex, block_manager: Any, feed: PolicyFeed | None = None) -> None:
        self.index = index
        self.block_manager = block_manager
        self.feed = feed
        self.block_size = index.block_size
        self._cached: set[int] = set()  # blocks in the index, i.e. trie-owned and not yet evicted
        self.num_lookups = 0
        self.num_proposed_blocks = 0  # blocks lookup offered the trie (it reuses those it verifies)
        self.num_stored_blocks = 0

    # -- patch 0002: fetch and store -------------------------------------

    def lookup(self, seq: LMDeploySequence, num_matched: int) -> list[int] | None:
        """Blocks caching ``seq``'s full blocks from token ``num_matched`` on, as the index knows them."""
        if not hasattr(seq, "history_cache"):
            return None  # not a sequence (LMDeploy's migration path passes a list): no opinion
        tokens = _tokens(seq, seq.num_valid_ids - 1)
        hit = self.index.lookup(tokens, _namespace(seq))
        if hit.block_ids:
            self.index.release(hit.block_ids)
        proposed = [int(block) for block in hit.block_ids[num_matched // self.block_size :]]
        self.num_lookups += 1
        self.num_proposed_blocks += len(proposed)
        if self.feed is not None and proposed:
            self.feed.accessed(proposed)
        return proposed

    def store(self, seq: LMDeploySequence, num_matched: int, blocks: np.ndarray) -> None:
        """Index the blocks the trie now caches; their prefix blocks are the sequence's first ones."""
        first = num_matched // self.block_size
        chain = [int(b) for b in seq.logical_blocks.get_real_blocks()[:first]] + [int(b) for b in blocks]
        tokens = _tokens(seq, len(chain) * self.block_size)
        adopted = [int(b) for b in self.index.insert(tokens, chain, _namespace(seq))]
        self.num_stored_blocks += len(blocks)
        if adopted:
            self.index.release(adopted)
            self._cached.update(adopted)
        if self.feed is not None:
            known = [int(b) for b in blocks if int(b) not in adopted]
            self.feed.inserted(adopted)
            self.feed.accessed(known)

    # -- patch 0001: eviction callback -----------------------------------

    def on_eviction(self, blocks: np.ndarray, reason: str) -> None:
        """Called before LMDeploy frees ``blocks``: drop trie evictions from the index (and the policy)."""
        if reason != "prefix":
            if self.feed is not None:
                self.feed.preempted(len(blocks))
            return
        gone = [int(b) for b in blocks if int(b) in self._cached]
        if self.feed is not None:
            self.feed.evicted(gone, self._candidates(gone))
        self.index.remove(gone)
        self._cached.difference_update(gone)

    # -- for the plan provider -------------------------------------------

    def cached_tokens(self, seq: LMDeploySequence) -> int:
        """Tokens a prefill of ``seq`` would take from the cache now (no references taken)."""
        return self.index.peek(_tokens(seq, seq.num_valid_ids - 1), _namespace(seq))

    @property
    def cached_blocks(self) -> frozenset[int]:
        """Blocks the index holds: trie-owned, not yet evicted."""
        return frozenset(self._cached)

    def _candidates(self, gone: Sequence[int]) -> Any:
        """Blocks the trie could have evicted at this moment: the ones it evicts, and any other unshared one."""
        free = {info.logical_id for info in self._infos(self._cached) if info.ref_count == 1} | set(gone)
        return free.__contains__

    def _infos(self, blocks: set[int]) -> list[Any]:
        return self.block_manager.get_block_info(sorted(blocks)) if blocks else []


def _tokens(seq: LMDeploySequence, end: int) -> list[int]:
    return [int(t) for t in seq.history_cache[: max(0, end)]]


def _namespace(seq: LMDeploySequence) -> str:
    """The trie keeps one root per LoRA adapter; the index keeps them apart by namespace."""
    return seq.adapter_name or ""
