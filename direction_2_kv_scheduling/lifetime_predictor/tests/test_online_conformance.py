"""The online predictor passes core's LifetimePredictor suite, built directly and through the registry."""

from __future__ import annotations

from sagellm.core.config import LifetimePredictorSection
from sagellm.core.protocols import LifetimePredictor
from sagellm.core.registry import create_lifetime_predictor
from sagellm.core.testing import LifetimePredictorConformance
from sagellm.lifetime_predictor import OnlineLifetimePredictor


class TestOnlineConformance(LifetimePredictorConformance):
    def make_predictor(self) -> LifetimePredictor:
        return OnlineLifetimePredictor()


class TestOnlineFromRegistry(LifetimePredictorConformance):
    def make_predictor(self) -> LifetimePredictor:
        return create_lifetime_predictor(LifetimePredictorSection(implementation="online"))
