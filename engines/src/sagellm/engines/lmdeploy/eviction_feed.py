"""Keep a sageLLM EvictionPolicy informed of LMDeploy's cached blocks, and measure how it would have chosen.

Patch 0001 tells us when blocks are cached, hit and evicted (with their
access times from ``get_block_info``), but LMDeploy's ``BlockTrie.evict``
still picks the victims itself (least recently used leaves): no patch lets
an outside policy choose them. So the policy is *fed* every event, exactly
as the native engine's KVManager feeds it, and at each trie eviction it is
asked which blocks it would have evicted among the same candidates. The
agreement is recorded, so a policy's effect on LMDeploy can be judged
before a victim-selection hook exists.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sagellm.core.protocols import EvictionPolicy
from sagellm.core.types import EvictionContext


@dataclass(slots=True)
class EvictionStats:
    """What LMDeploy evicted, and how often the sageLLM policy would have chosen the same blocks."""

    prefix_blocks: int = 0  # cached blocks the trie dropped ('prefix')
    preempted_blocks: int = 0  # blocks of evicted sequences ('preempt')
    policy_agreed: int = 0  # of prefix_blocks, those the policy also named among the same candidates

    @property
    def agreement(self) -> float:
        """Share of the trie's victims the policy would have picked (1.0 before any eviction)."""
        return self.policy_agreed / self.prefix_blocks if self.prefix_blocks else 1.0


class PolicyFeed:
    """Forwards cache events to an EvictionPolicy, timed by LMDeploy's own block access times."""

    def __init__(self, policy: EvictionPolicy, block_manager: Any) -> None:
        self.policy = policy
        self.block_manager = block_manager
        self.stats = EvictionStats()

    def inserted(self, blocks: Sequence[int]) -> None:
        for block, now in self._access_times(blocks):
            self.policy.on_insert(block, now)

    def accessed(self, blocks: Sequence[int]) -> None:
        for block, now in self._access_times(blocks):
            self.policy.on_access(block, now)

    def evicted(self, blocks: Sequence[int], is_candidate: Callable[[int], bool]) -> None:
        """The trie is about to free ``blocks``: ask the policy first, then forget them."""
        if not blocks:
            return
        wanted = self.policy.select_victims(
            EvictionContext(num_blocks=len(blocks), now=self._latest(blocks), is_evictable=is_candidate)
        )
        self.stats.prefix_blocks += len(blocks)
        self.stats.policy_agreed += len(set(wanted) & set(blocks))
        for block in blocks:
            self.policy.on_remove(block)

    def preempted(self, num_blocks: int) -> None:
        self.stats.preempted_blocks += num_blocks

    def _access_times(self, blocks: Iterable[int]) -> list[tuple[int, float]]:
        """(block, LMDeploy's access time) through patch 0001's block info."""
        blocks = list(blocks)
        if not blocks:
            return []
        return [(info.logical_id, info.access_time) for info in self.block_manager.get_block_info(blocks)]

    def _latest(self, blocks: Sequence[int]) -> float:
        return max((now for _, now in self._access_times(blocks)), default=0.0)
