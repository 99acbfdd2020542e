"""The core EvictionPolicy conformance suite, run against every policy of the package."""

from __future__ import annotations

from sagellm.core.protocols import EvictionPolicy
from sagellm.core.testing import EvictionPolicyConformance
from sagellm.eviction_policy import LRUEvictionPolicy


class TestLRUConformance(EvictionPolicyConformance):
    def make_policy(self) -> EvictionPolicy:
        return LRUEvictionPolicy()


class TestLRUWithoutPromotionConformance(EvictionPolicyConformance):
    def make_policy(self) -> EvictionPolicy:
        return LRUEvictionPolicy(promote_in_use=False)
