"""The chronological split never lets a prediction see its own answer, and scores what it should."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sagellm.core.errors import ConfigError
from sagellm.core.types import KVBlockMeta
from sagellm.lifetime_predictor.binary_scores import roc_auc, score
from sagellm.lifetime_predictor.chronological import SplitSettings, run_split
from sagellm.lifetime_predictor.trace_uses import BUNDLED_TRACES, load_uses, uses_from_rows


def _rows() -> list[dict[str, object]]:
    """Conversation A every 10 s (re-sending its prompt plus a block), one-off prompts in between."""
    rows: list[dict[str, object]] = []
    for turn in range(30):
        rows.append({"timestamp": turn * 10_000, "input_length": 512 * (turn + 2), "hash_ids": list(range(turn + 2))})
        rows.append({"timestamp": turn * 10_000 + 5_000, "input_length": 512, "hash_ids": [1000 + turn]})
    return rows


class _Spy:
    """Logs predictions and lessons in order, so the test can check nothing came from the future."""

    def __init__(self) -> None:
        self.log: list[tuple[str, float]] = []  # ("predict", now) or ("observe", when its answer was known)

    def predict(self, block_meta: KVBlockMeta, now: float = 0.0) -> float:
        self.log.append(("predict", now))
        return 5.0

    def observe(self, block_meta: KVBlockMeta, reused_after: float | None) -> None:
        self.log.append(("observe", block_meta.last_access + (30.0 if reused_after is None else reused_after)))

    def lessons_before_predictions(self) -> list[tuple[float, float]]:
        """(when a lesson's answer was known, the clock of the next prediction after it)."""
        pairs, waiting = [], []
        for kind, t in self.log:
            if kind == "observe":
                waiting.append(t)
            else:
                pairs.extend((known, t) for known in waiting)
                waiting = []
        return pairs


def test_uses_carry_online_features_and_future_answers() -> None:
    uses = uses_from_rows(_rows())
    first_block = [u for u in uses if u.meta.block_id == 0]
    assert [u.meta.access_count for u in first_block[:3]] == [0, 1, 2]
    assert first_block[0].next_gap_s == 10.0 and first_block[-1].next_gap_s is None
    one_off = next(u for u in uses if u.meta.block_id == 1000)
    assert one_off.next_gap_s is None and one_off.meta.turn == 0
    assert max(u.meta.turn for u in uses if u.meta.block_id < 1000) == 29  # each turn re-sends the previous prompt


def test_a_turn_continues_past_the_previous_prompts_partial_block() -> None:
    # System prompt block 0 is shared by all; turn 2 re-sends turn 1's full blocks (0, 1) but not its
    # partial block 2, whose hash changed once the answer was appended.
    rows = [
        {"timestamp": 0, "input_length": 1100, "hash_ids": [0, 1, 2]},
        {"timestamp": 1_000, "input_length": 1700, "hash_ids": [0, 1, 3, 4]},
        {"timestamp": 2_000, "input_length": 600, "hash_ids": [0, 9]},  # shares only the system prompt
    ]
    turns = {u.meta.block_id: u.meta.turn for u in uses_from_rows(rows)}
    assert (turns[2], turns[4], turns[9]) == (0, 1, 0)


def test_outcomes_arrive_only_after_they_happen() -> None:
    spy = _Spy()
    settings = SplitSettings(horizons_s=(10.0,), never_after_s=30.0, train_share=0.05)
    run_split(spy, uses_from_rows(_rows()), settings)  # type: ignore[arg-type]
    pairs = spy.lessons_before_predictions()
    assert pairs
    assert all(known <= predicted_at + 1e-9 for known, predicted_at in pairs)


def test_frozen_mode_stops_learning_at_the_split() -> None:
    spy = _Spy()
    uses = uses_from_rows(_rows())
    run_split(spy, uses, SplitSettings(horizons_s=(10.0,), never_after_s=30.0, online=False))  # type: ignore[arg-type]
    first_prediction = next(i for i, (kind, _) in enumerate(spy.log) if kind == "predict")
    assert all(kind == "predict" for kind, _ in spy.log[first_prediction:])


def test_scores_of_a_constant_answer() -> None:
    at_use, at_query = run_split(_Spy(), uses_from_rows(_rows()), SplitSettings(horizons_s=(10.0,), never_after_s=30.0))  # type: ignore[arg-type]
    scores = at_use.scores(10.0)
    assert scores.num > 0 and scores.recall == 1.0  # "5 s" is always <= 10 s: everything predicted reused
    assert math.isclose(scores.accuracy, scores.positive_rate)
    assert scores.auc == 0.5 and scores.balanced_accuracy == 0.5


def test_auc_and_scores() -> None:
    actual = np.array([True, True, False, False])
    assert roc_auc(np.array([4.0, 3.0, 2.0, 1.0]), actual) == 1.0
    assert roc_auc(np.array([1.0, 2.0, 3.0, 4.0]), actual) == 0.0
    assert roc_auc(np.array([1.0, 1.0, 1.0, 1.0]), actual) == 0.5
    s = score(np.array([True, False, False, False]), actual, np.zeros(4))
    assert (s.accuracy, s.precision, s.recall, s.majority_accuracy) == (0.75, 1.0, 0.5, 0.5)


@pytest.mark.parametrize("name", [None, *BUNDLED_TRACES])
def test_bundled_traces_load(name: str | None) -> None:
    uses = load_uses(name, limit=50)
    assert len(uses) > 50 and all(a.time_s <= b.time_s for a, b in zip(uses, uses[1:]))


def test_min_depth_leaves_shallow_blocks_out_of_the_questions() -> None:
    class _Depths(_Spy):
        def __init__(self) -> None:
            super().__init__()
            self.depths: list[int] = []

        def predict(self, block_meta: KVBlockMeta, now: float = 0.0) -> float:
            self.depths.append(block_meta.prefix_depth)
            return super().predict(block_meta, now)

    everything, deep = _Depths(), _Depths()
    uses = uses_from_rows(_rows())
    run_split(everything, uses, SplitSettings(horizons_s=(10.0,), never_after_s=30.0))  # type: ignore[arg-type]
    run_split(deep, uses, SplitSettings(horizons_s=(10.0,), never_after_s=30.0, min_depth=2))  # type: ignore[arg-type]
    assert min(everything.depths) == 0 and min(deep.depths) == 2


def test_bad_settings() -> None:
    with pytest.raises(ConfigError):
        SplitSettings(train_share=1.0)
    with pytest.raises(ConfigError):
        SplitSettings(horizons_s=(600.0,), never_after_s=60.0)
    with pytest.raises(ConfigError):
        SplitSettings(min_depth=-1)
