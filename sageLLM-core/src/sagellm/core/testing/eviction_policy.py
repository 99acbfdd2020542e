"""Conformance suite for :class:`sagellm.core.protocols.EvictionPolicy`."""

from __future__ import annotations

from sagellm.core.protocols import EvictionPolicy
from sagellm.core.types import EvictionContext


class EvictionPolicyConformance:
    """Inherit and implement :meth:`make_policy`."""

    def make_policy(self) -> EvictionPolicy:
        raise NotImplementedError

    def _policy_with(self, block_ids: range) -> EvictionPolicy:
        policy = self.make_policy()
        assert isinstance(policy, EvictionPolicy)
        assert isinstance(policy.name, str) and policy.name
        for i, block in enumerate(block_ids):
            policy.on_insert(block, now=float(i))
        return policy

    def test_empty_policy_selects_nothing(self) -> None:
        policy = self.make_policy()
        assert policy.select_victims(EvictionContext(num_blocks=3)) == []
        assert len(policy) == 0

    def test_selects_requested_number_of_distinct_tracked_blocks(self) -> None:
        policy = self._policy_with(range(10))
        victims = policy.select_victims(EvictionContext(num_blocks=4, now=100.0))
        assert len(victims) == 4 and len(set(victims)) == 4
        assert set(victims) <= set(range(10))

    def test_respects_is_evictable(self) -> None:
        policy = self._policy_with(range(10))
        pinned = {0, 1, 2, 3, 4}
        victims = policy.select_victims(
            EvictionContext(num_blocks=10, now=100.0, is_evictable=lambda b: b not in pinned)
        )
        assert set(victims) == set(range(5, 10))

    def test_removed_blocks_are_never_selected(self) -> None:
        policy = self._policy_with(range(6))
        for block in (0, 2, 4):
            policy.on_remove(block)
        assert len(policy) == 3
        assert set(policy.select_victims(EvictionContext(num_blocks=6, now=10.0))) == {1, 3, 5}

    def test_selection_does_not_forget_blocks(self) -> None:
        policy = self._policy_with(range(3))
        policy.select_victims(EvictionContext(num_blocks=1, now=10.0))
        assert len(policy) == 3, "only on_remove forgets a block"

    def test_access_of_tracked_block_is_accepted(self) -> None:
        policy = self._policy_with(range(4))
        for block in range(4):
            policy.on_access(block, now=10.0 + block)
        assert len(policy.select_victims(EvictionContext(num_blocks=2, now=20.0))) == 2

    def test_reinsert_after_remove(self) -> None:
        policy = self._policy_with(range(3))
        policy.on_remove(1)
        policy.on_insert(1, now=50.0)
        assert len(policy) == 3
        assert set(policy.select_victims(EvictionContext(num_blocks=3, now=60.0))) == {0, 1, 2}
