"""The look-ahead table: what answers keyed by the feature bins reach when learnt from the test period itself.

A predictor that maps a block's bins (and, at eviction time, its idle-time
bin) to yes/no can at best answer each key's commoner outcome. The
look-ahead table learns that answer from the *first half of the test
questions' own answers* — answers no online predictor has, minutes before
the questions it is scored on — and is scored on the second half. Where
even it does not beat always answering the commoner class, the features
carry no usable signal for the yes/no answer on that trace.

Keys are tried from fine to coarse (all bins, then reuses and idle time):
the first one seen at least ``MIN_SAMPLES`` times in the first half answers.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

from sagellm.lifetime_predictor.binary_scores import BinaryScores, score

MIN_SAMPLES = 8  # a key answers only once this many first-half questions had it


def lookahead_scores(keys: Sequence[Sequence[Hashable]], actual: np.ndarray) -> BinaryScores:
    """Learn each key's commoner answer on the first half of ``actual`` (time order), score the second half.

    ``keys[i]`` lists question i's keys from fine to coarse. Questions with
    no key seen often enough get the first half's commoner answer; the
    ranking (for the AUC) is the answering key's share of positives.
    """
    half = len(actual) // 2
    counts: list[dict[Hashable, list[int]]] = [{} for _ in (keys[0] if len(keys) else ())]
    for levels, outcome in zip(keys[:half], actual[:half]):
        for table, key in zip(counts, levels):
            table.setdefault(key, [0, 0])[int(outcome)] += 1
    overall = float(actual[:half].mean()) if half else 0.5
    rates = np.asarray([_positive_share(counts, levels, overall) for levels in keys[half:]], dtype=np.float64)
    return score(rates > 0.5, actual[half:], rates)


def _positive_share(counts: list[dict[Hashable, list[int]]], levels: Sequence[Hashable], overall: float) -> float:
    for table, key in zip(counts, levels):
        count = table.get(key)
        if count is not None and count[0] + count[1] >= MIN_SAMPLES:
            return count[1] / (count[0] + count[1])
    return overall
