"""Conformance suite for :class:`sagellm.core.protocols.EvictionPolicy`."""

from __future__ import annotations

from sagellm.core.protocols import EvictionPolicy, PredictiveEvictionPolicy
from sagellm.core.types import EvictionContext, KVBlockMeta


class _CountingPredictor:
    """A lifetime predictor that remembers being asked (reuse expected sooner for lower block ids)."""

    def __init__(self) -> None:
        self.predicted = 0

    def predict(self, block_meta: KVBlockMeta, now: float = 0.0) -> float:
        self.predicted += 1
        return float(block_meta.block_id)

    def observe(self, block_meta: KVBlockMeta, reused_after: float | None) -> None:
        return None


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

    def test_a_predictive_policy_ranks_by_the_predictor_it_is_given(self) -> None:
        """Only policies implementing PredictiveEvictionPolicy; others skip."""
        policy = self.make_policy()
        if not isinstance(policy, PredictiveEvictionPolicy):
            return
        predictor = _CountingPredictor()
        policy.use_predictor(predictor)
        assert policy.predictor is predictor
        for block in range(6):
            policy.on_insert(block, now=float(block))
        victims = policy.select_victims(EvictionContext(num_blocks=2, now=10.0))
        assert len(victims) == 2 and predictor.predicted > 0
