"""The online predictor: waits shrink with evidence of reuse, grow with idle time past the usual gap."""

from __future__ import annotations

from sagellm.core.errors import ConfigError
from sagellm.core.testing import raises
from sagellm.core.types import KVBlockMeta
from sagellm.lifetime_predictor import OnlineLifetimePredictor


def _meta(reuses: int, last_access: float = 100.0) -> KVBlockMeta:
    return KVBlockMeta(1, created_at=0.0, last_access=last_access, access_count=reuses, request_tokens=256)


def _trained() -> OnlineLifetimePredictor:
    predictor = OnlineLifetimePredictor(batch_size=128)
    for _ in range(1500):
        predictor.observe(_meta(2), 4.0)  # reused blocks come back after ~4 s
        predictor.observe(_meta(0), None)  # fresh ones never
    return predictor


def test_untrained_predicts_the_prior() -> None:
    assert OnlineLifetimePredictor(prior_s=3.0).predict(_meta(0), now=101.0) == 3.0


def test_predicts_the_learned_gap() -> None:
    wait = _trained().predict(_meta(2), now=100.0)
    assert 1.0 < wait < 10.0, wait


def test_idle_past_the_usual_gap_means_a_long_wait() -> None:
    predictor = _trained()
    assert predictor.predict(_meta(2), now=100.0 + 600.0) > 10 * predictor.predict(_meta(2), now=100.0)


def test_reuse_probability_within() -> None:
    predictor = _trained()
    assert predictor.reuse_probability(_meta(2), now=100.0, within=8.0) > 0.8
    assert predictor.reuse_probability(_meta(0), now=100.0, within=8.0) < 0.2


def test_flush_fits_what_is_buffered() -> None:
    predictor = OnlineLifetimePredictor(batch_size=10_000)
    predictor.observe(_meta(1), 2.0)
    assert not predictor.trained
    predictor.flush()
    assert predictor.trained


def test_bad_options() -> None:
    with raises(ConfigError):
        OnlineLifetimePredictor(batch_size=0)
    with raises(ConfigError):
        OnlineLifetimePredictor(prior_s=0.0)
