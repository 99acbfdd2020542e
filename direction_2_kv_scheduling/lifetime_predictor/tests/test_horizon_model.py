"""The horizon ladder: fits a known gap distribution, stays monotone, inverts consistently."""

from __future__ import annotations

import math

import numpy as np

from sagellm.core.errors import ConfigError
from sagellm.core.testing import raises
from sagellm.lifetime_predictor.horizon_model import HorizonModel, interpolate_cdf, inverse_cdf

HORIZONS = (1.0, 2.0, 4.0, 8.0, 16.0)


def test_learns_the_share_reused_within_each_horizon() -> None:
    model = HorizonModel(num_weights=2, horizons=HORIZONS, epochs=50, learning_rate=2.0)
    rng = np.random.default_rng(0)
    gaps = np.where(rng.random(4000) < 0.5, 3.0, np.inf)  # half back after 3 s, half never
    rows = np.zeros((4000, 1), dtype=np.int64)
    for _ in range(10):
        model.fit(rows, gaps)
    cdf = model.cdf([0])
    assert cdf[0] < 0.1 and cdf[1] < 0.1  # nothing back within 1 s or 2 s
    assert all(abs(p - 0.5) < 0.05 for p in cdf[2:])  # half back within 4 s and later


def test_separate_keys_learn_separately() -> None:
    model = HorizonModel(num_weights=2, horizons=HORIZONS, epochs=50, learning_rate=2.0)
    rows = np.array([[0]] * 500 + [[1]] * 500, dtype=np.int64)
    gaps = np.array([1.5] * 500 + [math.inf] * 500)
    for _ in range(10):
        model.fit(rows, gaps)
    assert model.cdf([0])[1] > 0.9 and model.cdf([1])[-1] < 0.1


def test_cdf_is_monotone() -> None:
    model = HorizonModel(num_weights=1, horizons=HORIZONS)
    model.weights[:] = np.array([[2.0], [-1.0], [0.5], [-3.0], [1.0]])
    cdf = model.cdf([0])
    assert cdf == sorted(cdf)


def test_interpolation_and_inverse_agree() -> None:
    cdf = [0.1, 0.2, 0.4, 0.6, 0.7]
    for q in (0.05, 0.15, 0.3, 0.5, 0.65):
        t = inverse_cdf(HORIZONS, cdf, q)
        assert math.isclose(interpolate_cdf(HORIZONS, cdf, t), q, rel_tol=1e-9)
    assert interpolate_cdf(HORIZONS, cdf, 0.0) == 0.0
    assert interpolate_cdf(HORIZONS, cdf, 1e6) == 0.7


def test_beyond_the_ladder_stays_finite_and_ordered() -> None:
    likely = inverse_cdf(HORIZONS, [0.1, 0.2, 0.3, 0.4, 0.45], 0.9)
    unlikely = inverse_cdf(HORIZONS, [0.0, 0.0, 0.0, 0.01, 0.02], 0.9)
    assert HORIZONS[-1] < likely < unlikely < math.inf


def test_bad_settings_are_config_errors() -> None:
    with raises(ConfigError):
        HorizonModel(2, horizons=(2.0, 1.0))
    with raises(ConfigError):
        HorizonModel(2, horizons=(0.0, 1.0))
    with raises(ConfigError):
        HorizonModel(2, learning_rate=0.0)
