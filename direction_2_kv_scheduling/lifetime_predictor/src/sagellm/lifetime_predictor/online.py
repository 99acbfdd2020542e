"""The online lifetime predictor: a reuse-gap distribution per feature bin, learned as it serves."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from sagellm.core.errors import ConfigError
from sagellm.core.types import KVBlockMeta
from sagellm.lifetime_predictor.features import NUM_WEIGHTS, encode
from sagellm.lifetime_predictor.horizon_model import HorizonModel, interpolate_cdf, inverse_cdf

_MAX_CACHED_KEYS = 1 << 16  # distinct feature keys whose CDF is kept between refits


class OnlineLifetimePredictor:
    """Implements :class:`sagellm.core.protocols.LifetimePredictor`; registered as ``online``.

    ``observe`` buffers (features, gap) outcomes; every ``batch_size`` of
    them one numpy fit updates a :class:`HorizonModel` that gives, per
    feature key, ``F(h) = P(reuse gap <= h)`` on a ladder of horizons.
    ``predict(meta, now)`` answers with the *median remaining wait* of a
    block idle for ``a = now - last_access``, i.e. conditioned on it not
    having come back yet::

        F(a) = P(gap <= a)                      read off the ladder
        t*   = F^-1(F(a) + (1 - F(a)) / 2)     half of what is left has come back by t*
        wait = t* - a                          (inf when F never gets there: likely never reused)

    so ``predict(meta, now) <= T`` means "more likely than not reused within
    T" — the classifier the evaluation scores. Idle time needs no feature:
    the conditioning uses it, which is what lets a policy compare a block
    idle for minutes with a fresh one. Cost per call: six bin computations,
    a dict look-up of the key's CDF (computed once per key after each fit)
    and two bisections — no numpy on the hot path.
    """

    def __init__(
        self,
        batch_size: int = 256,
        prior_s: float = 1.0,
        horizons: Sequence[float] | None = None,
        learning_rate: float = 1.0,
        epochs: int = 4,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        if prior_s <= 0:
            raise ConfigError(f"prior_s must be > 0, got {prior_s}")
        self.model = HorizonModel(NUM_WEIGHTS, horizons, learning_rate=learning_rate, epochs=epochs)
        self._horizons = list(self.model.horizons)
        self._batch_size = batch_size
        self._prior_s = prior_s
        self._rows: list[tuple[int, ...]] = []
        self._gaps: list[float] = []
        self._cdfs: dict[tuple[int, ...], list[float]] = {}

    @property
    def trained(self) -> bool:
        return self.model.num_fitted > 0

    def predict(self, block_meta: KVBlockMeta, now: float = 0.0) -> float:
        if not self.model.num_fitted:
            return self._prior_s
        cdf = self._cdf(encode(block_meta))
        idle = max(0.0, now - block_meta.last_access)
        returned = interpolate_cdf(self._horizons, cdf, idle)
        target = inverse_cdf(self._horizons, cdf, returned + 0.5 * (1.0 - returned))
        return max(0.0, target - idle)

    def reuse_probability(self, block_meta: KVBlockMeta, now: float, within: float) -> float:
        """P(reused in (now, now + within] | not reused by now): a score for ranking and for AUC."""
        if not self.model.num_fitted:
            return 0.5
        cdf = self._cdf(encode(block_meta))
        idle = max(0.0, now - block_meta.last_access)
        returned = interpolate_cdf(self._horizons, cdf, idle)
        if returned >= 1.0:
            return 0.0
        return (interpolate_cdf(self._horizons, cdf, idle + within) - returned) / (1.0 - returned)

    def observe(self, block_meta: KVBlockMeta, reused_after: float | None) -> None:
        self._rows.append(encode(block_meta))
        self._gaps.append(math.inf if reused_after is None else max(0.0, reused_after))
        if len(self._rows) >= self._batch_size:
            self.flush()

    def flush(self) -> None:
        """Fit on the buffered outcomes now (also done every ``batch_size`` observations)."""
        if not self._rows:
            return
        self.model.fit(np.asarray(self._rows, dtype=np.int64), np.asarray(self._gaps, dtype=np.float64))
        self._rows.clear()
        self._gaps.clear()
        self._cdfs.clear()

    def _cdf(self, key: tuple[int, ...]) -> list[float]:
        cdf = self._cdfs.get(key)
        if cdf is None:
            if len(self._cdfs) >= _MAX_CACHED_KEYS:
                self._cdfs.clear()
            cdf = self._cdfs[key] = self.model.cdf(key)
        return cdf
