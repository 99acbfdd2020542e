"""Conformance suite for :class:`sagellm.core.protocols.LifetimePredictor`."""

from __future__ import annotations

import math

from sagellm.core.protocols import LifetimePredictor
from sagellm.core.types import KVBlockMeta


def _meta(block_id: int, access_count: int = 0, depth: int = 0, last_access: float = 0.0) -> KVBlockMeta:
    return KVBlockMeta(
        block_id=block_id,
        size_bytes=4096,
        created_at=0.0,
        last_access=last_access,
        access_count=access_count,
        prefix_depth=depth,
        request_tokens=512,
    )


class LifetimePredictorConformance:
    """Inherit and implement :meth:`make_predictor` (a fresh, untrained predictor)."""

    def make_predictor(self) -> LifetimePredictor:
        raise NotImplementedError

    def _trained(self, rounds: int = 600) -> LifetimePredictor:
        """Blocks reused before (access_count 3) come back after ~2 s; never-reused ones never do."""
        predictor = self.make_predictor()
        for i in range(rounds):
            predictor.observe(_meta(i, access_count=3, depth=1, last_access=10.0), reused_after=2.0)
            predictor.observe(_meta(i, access_count=0, depth=1, last_access=10.0), reused_after=None)
        return predictor

    def test_implements_the_protocol(self) -> None:
        assert isinstance(self.make_predictor(), LifetimePredictor)

    def test_untrained_prediction_is_a_non_negative_float(self) -> None:
        wait = self.make_predictor().predict(_meta(1), now=5.0)
        assert isinstance(wait, float) and (wait >= 0.0 or math.isinf(wait))
        assert not math.isnan(wait)

    def test_clock_before_last_access_is_accepted(self) -> None:
        wait = self.make_predictor().predict(_meta(1, last_access=50.0), now=10.0)
        assert wait >= 0.0 and not math.isnan(wait)

    def test_observe_accepts_never_and_zero_gap(self) -> None:
        predictor = self.make_predictor()
        predictor.observe(_meta(1), reused_after=None)
        predictor.observe(_meta(2), reused_after=0.0)
        assert not math.isnan(predictor.predict(_meta(3), now=1.0))

    def test_predict_leaves_the_record_alone(self) -> None:
        predictor = self._trained(50)
        meta = _meta(7, access_count=2, depth=4, last_access=3.0)
        before = (meta.last_access, meta.access_count, meta.prefix_depth, meta.created_at)
        predictor.predict(meta, now=9.0)
        assert (meta.last_access, meta.access_count, meta.prefix_depth, meta.created_at) == before

    def test_learns_that_hot_blocks_come_back_sooner(self) -> None:
        predictor = self._trained()
        hot = predictor.predict(_meta(1, access_count=3, depth=1, last_access=100.0), now=100.5)
        cold = predictor.predict(_meta(2, access_count=0, depth=1, last_access=100.0), now=100.5)
        assert hot < cold, (
            f"a block that always came back after 2 s should wait less ({hot}) than one that never did ({cold})"
        )
        assert hot < 60.0, f"learned reuse after ~2 s, predicted {hot} s"
