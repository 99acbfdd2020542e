"""The look-ahead table learns each key's commoner answer from the first half and is scored on the second."""

from __future__ import annotations

import numpy as np

from sagellm.lifetime_predictor.lookahead import MIN_SAMPLES, lookahead_scores


def test_a_key_that_decides_the_answer_is_learnt() -> None:
    rng = np.random.default_rng(0)
    fine = rng.integers(0, 4, 2_000)
    actual = fine % 2 == 1
    keys = [((int(k),), ()) for k in fine]
    scores = lookahead_scores(keys, actual)
    assert scores.num == 1_000 and scores.accuracy == 1.0 and scores.auc == 1.0


def test_keys_without_signal_do_not_beat_the_commoner_class() -> None:
    rng = np.random.default_rng(1)
    actual = rng.random(4_000) < 0.3
    keys = [((int(k),), ()) for k in rng.integers(0, 20, 4_000)]
    scores = lookahead_scores(keys, actual)
    assert scores.accuracy <= scores.majority_accuracy + 0.01
    assert abs(scores.auc - 0.5) < 0.05


def test_rare_fine_keys_fall_back_to_the_coarse_key() -> None:
    # The first half sees fine key 7 once (False), too rarely to answer: its coarse key (mostly True) does.
    first = [((0,), ("c",))] * MIN_SAMPLES + [((7,), ("c",))]
    first_actual = [True] * MIN_SAMPLES + [False]
    keys = first + [((7,), ("c",))] * len(first)
    actual = np.asarray(first_actual + [True] * len(first))
    assert lookahead_scores(keys, actual).accuracy == 1.0


def test_unseen_keys_get_the_first_half_commoner_answer() -> None:
    keys = [((0,), (0,))] * 10 + [((1,), (1,))] * 10
    actual = np.asarray([False] * 10 + [True] * 10)
    assert lookahead_scores(keys, actual).accuracy == 0.0  # key 1 was never seen: "no" everywhere
