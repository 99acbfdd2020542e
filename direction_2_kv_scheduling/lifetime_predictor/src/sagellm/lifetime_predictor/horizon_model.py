"""P(reused within h) for a ladder of horizons h: one logistic model per horizon, fitted with numpy.

The ladder turns "when will it be reused" into a handful of yes/no
questions with a shared input: for horizons ``h_0 < h_1 < ...`` the model
gives ``F(h_k) = P(gap <= h_k)``, an empirical CDF of the reuse gap that a
predictor can read a median or a conditional probability from. Inputs are
one-hot feature bins (see :mod:`~sagellm.lifetime_predictor.features`), so
a row's logit is a sum of one weight per feature.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from sagellm.core.errors import ConfigError


def default_horizons() -> tuple[float, ...]:
    """1/16 s .. ~4.5 h, doubling: wide enough for engine clocks (ms) and trace clocks (minutes)."""
    return tuple(2.0**k / 16 for k in range(19))


class HorizonModel:
    """Weights ``[num_horizons, num_weights]`` and biases, trained by mini-batch gradient steps on log loss."""

    def __init__(
        self,
        num_weights: int,
        horizons: Sequence[float] | None = None,
        learning_rate: float = 1.0,
        epochs: int = 4,
        l2: float = 1e-4,
    ) -> None:
        self.horizons = tuple(horizons) if horizons is not None else default_horizons()
        if not self.horizons or any(b <= a for a, b in zip(self.horizons, self.horizons[1:])):
            raise ConfigError(f"horizons must be increasing and non-empty, got {self.horizons}")
        if self.horizons[0] <= 0:
            raise ConfigError(f"horizons must be > 0 s, got {self.horizons[0]}")
        if learning_rate <= 0 or epochs < 1 or l2 < 0:
            raise ConfigError(f"need learning_rate > 0, epochs >= 1, l2 >= 0; got {learning_rate}, {epochs}, {l2}")
        self._h = np.asarray(self.horizons, dtype=np.float64)
        self.weights = np.zeros((len(self.horizons), num_weights))
        self.bias = np.zeros(len(self.horizons))
        self.learning_rate = learning_rate
        self.epochs = epochs
        self.l2 = l2
        self.num_fitted = 0

    def fit(self, rows: NDArray[np.int64], gaps: NDArray[np.float64]) -> None:
        """A few gradient steps on one batch; ``gaps`` is ``inf`` for blocks never reused.

        Warm-started from the current weights with a constant step, so later
        batches count more than old ones: the model follows a drifting
        workload instead of averaging over all of history.
        """
        if len(rows) == 0:
            return
        labels = (gaps[None, :] <= self._h[:, None]).astype(np.float64)  # [H, n]
        num_rows, num_features = rows.shape
        flat = rows.reshape(-1)
        step = self.learning_rate / num_rows
        for _ in range(self.epochs):
            logits = self.weights[:, rows].sum(axis=2) + self.bias[:, None]  # [H, n]
            error = _sigmoid(logits) - labels
            for h in range(len(self.horizons)):
                grad = np.bincount(flat, weights=np.repeat(error[h], num_features), minlength=self.weights.shape[1])
                self.weights[h] -= step * grad + self.l2 * self.weights[h]
            self.bias -= step * error.sum(axis=1)
        self.num_fitted += num_rows

    def cdf(self, row: Sequence[int]) -> list[float]:
        """``F(h_k)`` for one row, made non-decreasing in ``h`` (the heads are fitted separately)."""
        logits = self.weights[:, list(row)].sum(axis=1) + self.bias
        return [float(p) for p in np.maximum.accumulate(_sigmoid(logits))]


def _sigmoid(x: NDArray[np.float64]) -> NDArray[np.float64]:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free logistic


def interpolate_cdf(horizons: Sequence[float], cdf: Sequence[float], t: float) -> float:
    """``F(t)`` between ladder points, linear in log-time; 0 at t = 0, flat beyond the last horizon."""
    if t <= 0.0:
        return 0.0
    if t <= horizons[0]:
        return cdf[0] * t / horizons[0]
    if t >= horizons[-1]:
        return cdf[-1]
    k = bisect_left(horizons, t)
    low, high = horizons[k - 1], horizons[k]
    share = math.log(t / low) / math.log(high / low)
    return cdf[k - 1] + share * (cdf[k] - cdf[k - 1])


def inverse_cdf(horizons: Sequence[float], cdf: Sequence[float], q: float) -> float:
    """Smallest ``t`` with ``F(t) >= q`` (interpolated as in :func:`interpolate_cdf`).

    Beyond the ladder (``F`` never reaches ``q``) the answer stays finite and
    keeps its order: the last horizon stretched by ``q / F(last)``, so of two
    blocks unlikely to return, the likelier one still ranks first — an
    eviction policy compares these, and ``inf`` for both would tie them.
    """
    if q > cdf[-1]:
        return horizons[-1] * q / max(cdf[-1], 1e-12)
    k = bisect_left(cdf, q)
    if k == 0:
        return horizons[0] * (q / cdf[0] if cdf[0] > 0 else 1.0)
    low, high = cdf[k - 1], cdf[k]
    share = (q - low) / (high - low) if high > low else 1.0
    return float(horizons[k - 1] * (horizons[k] / horizons[k - 1]) ** share)
