"""ESC: stop at the first agreeing window, count the samples it draws, vote when none agrees."""

from __future__ import annotations

import random

import pytest

from sagellm.cot_acceleration import AnswerProbeAccelerator, consistent, majority_vote, samples_until_consistent


def test_the_first_agreeing_window_stops_the_draw() -> None:
    answers = ["7", "8", "7", "7", "7"] + ["7"] * 5 + ["9"] * 5
    assert consistent(answers[:5], 5) is None
    assert consistent(answers[:10], 5) == "7"
    assert samples_until_consistent(answers, 5) == 10


def test_only_complete_windows_count() -> None:
    answers = ["7", "8", "7", "7", "7", "7", "7", "7", "7"]  # 9: the second window is one sample short
    assert consistent(answers, 5) is None  # judged on window 1 (disagrees); samples 6-9 wait for their window
    assert consistent(answers + ["7"], 5) == "7"
    assert consistent(["7"] * 4, 5) is None


def test_windows_are_the_blocks_of_the_draw_order_not_a_sliding_window() -> None:
    answers = ["1", "2", "7", "7", "7", "7", "7", "3", "4", "5"]  # five 7s in a row, across two windows
    assert consistent(answers, 5) is None
    assert samples_until_consistent(answers, 5) == 10


def test_a_first_window_in_agreement_costs_one_window() -> None:
    assert samples_until_consistent(["4"] * 40, 5) == 5


def test_unread_answers_never_agree() -> None:
    assert consistent([None] * 5, 5) is None
    assert consistent(["7"] * 4 + [None], 5) is None
    assert samples_until_consistent([None] * 40, 5) == 40


def test_without_agreement_every_sample_is_drawn() -> None:
    answers = [str(i % 3) for i in range(40)]
    assert samples_until_consistent(answers, 5) == 40


@pytest.mark.parametrize("window", [2, 3, 5, 8])
def test_samples_used_match_the_rule_on_random_draws(window: int) -> None:
    rng = random.Random(window)
    for _ in range(300):
        answers = [rng.choice(["a", "a", "a", "b", None]) for _ in range(40)]
        used = samples_until_consistent(answers, window)
        blocks = [answers[i : i + window] for i in range(0, 40 - window + 1, window)]
        first = next((i for i, b in enumerate(blocks) if b[0] is not None and len(set(b)) == 1), None)
        assert used == (40 if first is None else (first + 1) * window)
        if first is not None:
            assert consistent(answers[:used], window) == blocks[first][0]
            assert all(consistent(answers[:end], window) is None for end in range(used))


def test_majority_vote() -> None:
    assert majority_vote(["8", "7", "7", "8"]) == "8"  # tie: first seen
    assert majority_vote(["8", "7", "7"]) == "7"
    assert majority_vote([None, None, "3"]) == "3"
    assert majority_vote([None, None]) is None
    assert majority_vote([]) is None


def test_the_accelerator_uses_its_window() -> None:
    accelerator = AnswerProbeAccelerator(esc_window=3)
    assert accelerator.esc_window == 3
    assert accelerator.consistent(["1", "1", "1"]) == "1"
    assert accelerator.consistent(["1", "1"]) is None
    assert accelerator.vote(["2", "1", "1"]) == "1"
