"""The default predictor: a prior, then expected remaining wait from observed reuse gaps per reuse count."""

from __future__ import annotations

import math

import pytest

from sagellm.core.errors import ConfigError
from sagellm.core.protocols import LifetimePredictor
from sagellm.core.types import KVBlockMeta
from sagellm.eviction_policy import ReuseIntervalPredictor


def _meta(access_count: int, last_access: float = 0.0) -> KVBlockMeta:
    return KVBlockMeta(block_id=1, access_count=access_count, last_access=last_access)


def test_prior_until_the_group_has_an_outcome() -> None:
    predictor = ReuseIntervalPredictor(prior_s=2.5)
    assert isinstance(predictor, LifetimePredictor)
    assert predictor.predict(_meta(0), now=100.0) == 2.5


def test_a_group_that_never_comes_back_waits_forever() -> None:
    predictor = ReuseIntervalPredictor()
    predictor.observe(_meta(0), None)
    assert predictor.predict(_meta(0)) == math.inf
    assert predictor.predict(_meta(1)) == 1.0, "other groups keep their prior"


def test_waiting_grows_with_idle_time_and_with_blocks_that_never_returned() -> None:
    predictor = ReuseIntervalPredictor(refresh_every=1)
    for _ in range(20):
        predictor.observe(_meta(1), 2.0)
    fresh = predictor.predict(_meta(1, last_access=10.0), now=10.0)
    assert 1.0 < fresh < 3.0, "about the usual 2 s gap"
    assert predictor.predict(_meta(1, last_access=10.0), now=10.0 + 100.0) == math.inf, "idle far past every gap"
    for _ in range(20):
        predictor.observe(_meta(1), None)
    assert predictor.predict(_meta(1, last_access=10.0), now=10.0) == pytest.approx(2 * fresh), "half never return"


def test_groups_are_separate_and_capped() -> None:
    predictor = ReuseIntervalPredictor(refresh_every=1)
    predictor.observe(_meta(0), 0.5)
    predictor.observe(_meta(7), 40.0)
    assert predictor.predict(_meta(0)) < 1.0 < predictor.predict(_meta(3))


@pytest.mark.parametrize("options", [{"prior_s": 0.0}, {"refresh_every": 0}])
def test_bad_options(options: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        ReuseIntervalPredictor(**options)  # type: ignore[arg-type]
