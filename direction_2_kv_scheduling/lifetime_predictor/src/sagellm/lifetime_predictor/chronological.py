"""Score a predictor on a trace the way it would run: learn from the past, predict the future.

Uses are replayed in time order. The outcome of a use (reused after g
seconds, or not within ``never_after_s``) is handed to ``observe`` only
once it has happened — at ``t + g``, or at ``t + never_after_s`` as
"never" — so no prediction ever sees its own answer. The first
``train_share`` of the uses trains; the rest is the test set, scored at
each horizon T by "is ``predict(meta, now=t)`` <= T?" against "was the
block used again within T?". Test uses within T of the trace's end are
left out (their answer is not known). Two modes:

* ``online``: the predictor keeps learning during the test period (the
  way it runs in a cache) — still only from outcomes that have happened;
* ``frozen``: learning stops at the split; this shows how fast what was
  learnt goes stale on a drifting workload.

Besides the uses themselves (asked at the moment of use, idle 0), the
test period also asks the question an eviction policy asks: at every
``query_every``-th request arrival, ``queries_per_arrival`` blocks used in
the last ``never_after_s`` and not used since are drawn at random and
asked about at *that* moment, idle for however long they have been — the
"eviction-time" test set.
"""

from __future__ import annotations

import heapq
import itertools
import random
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sagellm.core.errors import ConfigError
from sagellm.core.protocols import LifetimePredictor
from sagellm.core.types import KVBlockMeta
from sagellm.lifetime_predictor.binary_scores import BinaryScores, score
from sagellm.lifetime_predictor.features import encode, time_bin
from sagellm.lifetime_predictor.lookahead import lookahead_scores
from sagellm.lifetime_predictor.trace_uses import BlockUse


@dataclass(frozen=True, slots=True)
class SplitSettings:
    horizons_s: tuple[float, ...] = (30.0, 60.0, 120.0)
    train_share: float = 0.7
    never_after_s: float = 1200.0
    online: bool = True
    query_every: int = 4  # request arrivals between eviction-time queries
    queries_per_arrival: int = 64
    seed: int = 0
    min_depth: int = 0  # ask only about blocks this deep in their prompt (1: leave out a shared system prompt)

    def __post_init__(self) -> None:
        if not 0.0 < self.train_share < 1.0:
            raise ConfigError(f"train_share must be in (0, 1), got {self.train_share}")
        if not self.horizons_s or min(self.horizons_s) <= 0:
            raise ConfigError(f"horizons must be > 0 s, got {self.horizons_s}")
        if self.min_depth < 0:
            raise ConfigError(f"min_depth must be >= 0, got {self.min_depth}")
        if self.never_after_s < max(self.horizons_s):
            raise ConfigError(f"never_after_s ({self.never_after_s}) must be >= the largest horizon")


@dataclass(frozen=True, slots=True)
class TestPredictions:
    """What the predictor said about each test question, next to what happened.

    A question is (a block, a moment): at a use (idle 0) or at an
    eviction-time query. ``next_gap_s`` counts from that moment.
    """

    time_s: np.ndarray  # float64 [n]
    wait_s: np.ndarray  # float64 [n], the predictions (inf allowed)
    next_gap_s: np.ndarray  # float64 [n], inf where never used again
    reuses: np.ndarray  # int64 [n], access_count at the question (for the heuristic baseline)
    keys: tuple[tuple[tuple[int, ...], ...], ...]  # per question: look-ahead keys, fine to coarse
    end_s: float

    def scores(self, horizon_s: float) -> BinaryScores:
        known, actual = self._answered(horizon_s)
        wait = self.wait_s[known]
        return score(wait <= horizon_s, actual, -wait)

    def lookahead_scores(self, horizon_s: float) -> BinaryScores:
        """The look-ahead table on these questions (see :mod:`~sagellm.lifetime_predictor.lookahead`)."""
        known, actual = self._answered(horizon_s)
        return lookahead_scores([key for key, keep in zip(self.keys, known) if keep], actual)

    def heuristic_scores(self, horizon_s: float) -> BinaryScores:
        """Baseline without learning: "reused before, so it will be again"."""
        known, actual = self._answered(horizon_s)
        reuses = self.reuses[known]
        return score(reuses > 0, actual, reuses.astype(np.float64))

    def _answered(self, horizon_s: float) -> tuple[np.ndarray, np.ndarray]:
        """Which questions' answers lie inside the trace, and those answers ("used again within T")."""
        known = self.time_s + horizon_s <= self.end_s
        return known, self.next_gap_s[known] <= horizon_s


class _Answers:
    """Accumulates questions and answers; one per test set."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.waits: list[float] = []
        self.gaps: list[float] = []
        self.reuses: list[int] = []
        self.keys: list[tuple[tuple[int, ...], ...]] = []

    def add(self, time_s: float, predictor: LifetimePredictor, meta: KVBlockMeta, gap_s: float | None) -> None:
        """Ask ``predictor`` about ``meta`` at ``time_s`` and keep the answer next to the truth."""
        self.times.append(time_s)
        self.waits.append(predictor.predict(meta, time_s))
        self.gaps.append(np.inf if gap_s is None else gap_s)
        self.reuses.append(meta.access_count)
        bins, idle = encode(meta), time_bin(time_s - meta.last_access)
        self.keys.append(((*bins, idle), (bins[0], idle)))  # every bin; reuses and idle time

    def freeze(self, end_s: float) -> TestPredictions:
        return TestPredictions(
            time_s=np.asarray(self.times, dtype=np.float64),
            wait_s=np.asarray(self.waits, dtype=np.float64),
            next_gap_s=np.asarray(self.gaps, dtype=np.float64),
            reuses=np.asarray(self.reuses, dtype=np.int64),
            keys=tuple(self.keys),
            end_s=end_s,
        )


def run_split(
    predictor: LifetimePredictor, uses: Sequence[BlockUse], settings: SplitSettings
) -> tuple[TestPredictions, TestPredictions]:
    """Replay ``uses`` (time-ordered) through ``predictor``: (answers at use time, answers at eviction-time queries)."""
    if len(uses) < 2:
        raise ConfigError(f"need at least 2 block uses to split, got {len(uses)}")
    split_time = uses[int(settings.train_share * len(uses))].time_s
    times = [use.time_s for use in uses]
    pending: list[tuple[float, int, KVBlockMeta, float | None]] = []
    order = itertools.count()
    rng = random.Random(settings.seed)
    at_use, at_query = _Answers(), _Answers()
    frozen = False
    arrivals = 0
    for i, use in enumerate(uses):
        learn_until = use.time_s if settings.online or use.time_s < split_time else split_time
        _deliver(predictor, pending, learn_until)
        if use.time_s >= split_time:
            if not settings.online and not frozen:
                _flush(predictor)
                frozen = True
            if i == 0 or use.time_s != times[i - 1]:
                arrivals += 1
                if arrivals % settings.query_every == 0:
                    _query(predictor, uses, times, i, settings, rng, at_query)
            if use.meta.prefix_depth >= settings.min_depth:
                at_use.add(use.time_s, predictor, use.meta, use.next_gap_s)
        known_at, outcome = _outcome(use, settings.never_after_s)
        heapq.heappush(pending, (known_at, next(order), use.meta, outcome))
    return at_use.freeze(uses[-1].time_s), at_query.freeze(uses[-1].time_s)


def _query(
    predictor: LifetimePredictor,
    uses: Sequence[BlockUse],
    times: list[float],
    now_index: int,
    settings: SplitSettings,
    rng: random.Random,
    answers: _Answers,
) -> None:
    """Ask about random blocks used recently but not since: what an eviction policy weighs."""
    now = times[now_index]
    first = bisect_left(times, now - settings.never_after_s, 0, now_index)
    if first >= now_index:
        return
    for _ in range(settings.queries_per_arrival):
        use = uses[rng.randrange(first, now_index)]
        if use.time_s >= now or (use.next_gap_s is not None and use.time_s + use.next_gap_s <= now):
            continue  # used again since: not idle in a cache
        if use.meta.prefix_depth < settings.min_depth:
            continue
        gap = None if use.next_gap_s is None else use.time_s + use.next_gap_s - now
        answers.add(now, predictor, use.meta, gap)


def _outcome(use: BlockUse, never_after_s: float) -> tuple[float, float | None]:
    """When the answer is known, and what it is (None: not within ``never_after_s``)."""
    gap = use.next_gap_s
    if gap is not None and gap <= never_after_s:
        return use.time_s + gap, gap
    return use.time_s + never_after_s, None


def _deliver(
    predictor: LifetimePredictor, pending: list[tuple[float, int, KVBlockMeta, float | None]], until: float
) -> None:
    while pending and pending[0][0] <= until:
        _, _, meta, outcome = heapq.heappop(pending)
        predictor.observe(meta, outcome)


def _flush(predictor: LifetimePredictor) -> None:
    """Fit what a batching predictor still buffers before learning stops (frozen mode)."""
    flush = getattr(predictor, "flush", None)
    if callable(flush):
        flush()
