"""The core EvictionPolicy conformance suite, run against every policy of the package (and key variants)."""

from __future__ import annotations

from sagellm.core.protocols import EvictionPolicy
from sagellm.core.testing import EvictionPolicyConformance
from sagellm.core.types import KVBlockMeta
from sagellm.eviction_policy import (
    ARCEvictionPolicy,
    GDSFEvictionPolicy,
    LearnedEvictionPolicy,
    LFUEvictionPolicy,
    LRUEvictionPolicy,
    S3FIFOEvictionPolicy,
)
from sagellm.eviction_policy.sim import BeladyEvictionPolicy, FutureAccesses, trace_from_rows


class ConstantPredictor:
    """A LifetimePredictor that always answers the same wait."""

    def predict(self, block_meta: KVBlockMeta, now: float = 0.0) -> float:
        return 5.0

    def observe(self, block_meta: KVBlockMeta, reused_after: float | None) -> None:
        pass


class TestLRUConformance(EvictionPolicyConformance):
    def make_policy(self) -> EvictionPolicy:
        return LRUEvictionPolicy()


class TestLRUWithoutPromotionConformance(EvictionPolicyConformance):
    def make_policy(self) -> EvictionPolicy:
        return LRUEvictionPolicy(promote_in_use=False)


class TestLRUTailFirstConformance(EvictionPolicyConformance):
    def make_policy(self) -> EvictionPolicy:
        return LRUEvictionPolicy(tail_first=True)


class TestLFUConformance(EvictionPolicyConformance):
    def make_policy(self) -> EvictionPolicy:
        return LFUEvictionPolicy()


class TestLFUWithoutAgingConformance(EvictionPolicyConformance):
    def make_policy(self) -> EvictionPolicy:
        return LFUEvictionPolicy(aging=False, tail_first=False)


class TestARCConformance(EvictionPolicyConformance):
    def make_policy(self) -> EvictionPolicy:
        return ARCEvictionPolicy()


class TestS3FIFOConformance(EvictionPolicyConformance):
    def make_policy(self) -> EvictionPolicy:
        return S3FIFOEvictionPolicy()


class TestGDSFConformance(EvictionPolicyConformance):
    def make_policy(self) -> EvictionPolicy:
        return GDSFEvictionPolicy()


class TestLearnedConformance(EvictionPolicyConformance):
    def make_policy(self) -> EvictionPolicy:
        return LearnedEvictionPolicy()


class TestLearnedWithGivenPredictorConformance(EvictionPolicyConformance):
    def make_policy(self) -> EvictionPolicy:
        return LearnedEvictionPolicy(predictor=ConstantPredictor(), num_classes=4)


class TestBeladyConformance(EvictionPolicyConformance):
    def make_policy(self) -> EvictionPolicy:
        trace = trace_from_rows([{"timestamp": 0, "hash_ids": list(range(10))}])
        return BeladyEvictionPolicy(FutureAccesses(trace))
