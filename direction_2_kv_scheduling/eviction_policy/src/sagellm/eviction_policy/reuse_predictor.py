"""A small online lifetime predictor, the learned policy's default when none is handed over."""

from __future__ import annotations

import math

from sagellm.core.errors import ConfigError
from sagellm.core.types import KVBlockMeta

_NUM_GROUPS = 4  # blocks reused 0, 1, 2, 3+ times: the groups behave differently, beyond 3 alike
_NUM_BINS = 40  # gap bins of doubling width from _MIN_GAP_S: 1 ms .. ~35 years
_MIN_GAP_S = 1e-3


class _GapHistogram:
    """Reuse gaps seen for one group of blocks, plus how many never came back."""

    __slots__ = ("counts", "sums", "never", "total", "_count_above", "_sum_above", "_stale")

    def __init__(self) -> None:
        self.counts = [0] * _NUM_BINS
        self.sums = [0.0] * _NUM_BINS
        self.never = 0
        self.total = 0
        self._count_above = [0] * _NUM_BINS  # gaps in bins above bin i
        self._sum_above = [0.0] * _NUM_BINS
        self._stale = 0

    def add(self, gap: float) -> None:
        i = _bin(gap)
        self.counts[i] += 1
        self.sums[i] += gap
        self.total += 1
        self._stale += 1

    def add_never(self) -> None:
        self.never += 1
        self.total += 1

    def above(self, refresh_every: int) -> tuple[list[int], list[float]]:
        """Suffix sums, rebuilt after ``refresh_every`` new gaps: O(bins) amortised over them."""
        if self._stale >= refresh_every or (self._stale and self.total <= refresh_every):
            count, total = 0, 0.0
            for i in range(_NUM_BINS - 1, -1, -1):
                self._count_above[i], self._sum_above[i] = count, total
                count += self.counts[i]
                total += self.sums[i]
            self._stale = 0
        return self._count_above, self._sum_above


def _bin(gap: float) -> int:
    if gap <= _MIN_GAP_S:
        return 0
    return min(_NUM_BINS - 1, int(math.log2(gap / _MIN_GAP_S)))


def _bin_bounds(i: int) -> tuple[float, float]:
    return (0.0 if i == 0 else _MIN_GAP_S * 2.0**i), _MIN_GAP_S * 2.0 ** (i + 1)


class ReuseIntervalPredictor:
    """Implements :class:`sagellm.core.protocols.LifetimePredictor` from a histogram of reuse gaps.

    Blocks are grouped by how often they were reused so far (0, 1, 2, 3+;
    ``access_count``). Per group it keeps a histogram of the gaps after
    which blocks came back (bins of doubling width) and a count of those
    that never did. For a block idle for ``a`` seconds it predicts the
    expected remaining wait given that it has not come back yet, divided by
    the chance that it comes back at all::

        E[gap - a | a < gap < inf] / P(gap < inf | gap > a)

    The longer a block idles past its group's usual gaps, the larger both
    factors grow — this is what lets a policy compare an old block of a hot
    group with a fresh one of a cold group. Until a group has an outcome it
    predicts ``prior_s``. O(1) per call (suffix sums refreshed every
    ``refresh_every`` outcomes); no dependencies. A stronger predictor
    plugs in through the learned policy's ``predictor`` argument.
    """

    def __init__(self, prior_s: float = 1.0, refresh_every: int = 64) -> None:
        if prior_s <= 0:
            raise ConfigError(f"prior_s must be > 0, got {prior_s}")
        if refresh_every < 1:
            raise ConfigError(f"refresh_every must be >= 1, got {refresh_every}")
        self._prior_s = prior_s
        self._refresh_every = refresh_every
        self._groups = [_GapHistogram() for _ in range(_NUM_GROUPS)]

    def predict(self, block_meta: KVBlockMeta, now: float = 0.0) -> float:
        group = self._groups[min(block_meta.access_count, _NUM_GROUPS - 1)]
        if group.total == 0:
            return self._prior_s
        idle = max(0.0, now - block_meta.last_access)
        i = _bin(idle)
        count_above, sum_above = group.above(self._refresh_every)
        low, high = _bin_bounds(i)
        share = min(1.0, max(0.0, (high - idle) / (high - low)))  # part of bin i still ahead of `idle`
        waiting = count_above[i] + share * group.counts[i]
        if waiting <= 0.0:
            return math.inf
        remaining = max(_MIN_GAP_S, (sum_above[i] + share * group.sums[i]) / waiting - idle)
        return remaining * (waiting + group.never) / waiting

    def observe(self, block_meta: KVBlockMeta, reused_after: float | None) -> None:
        group = self._groups[min(block_meta.access_count, _NUM_GROUPS - 1)]
        if reused_after is None:
            group.add_never()
        else:
            group.add(max(0.0, reused_after))
