"""Early exit on scripted reasoning traces: it stops exactly where the rule says, and not before."""

from __future__ import annotations

from itertools import accumulate

import pytest

from sagellm.cot_acceleration import AnswerProbeAccelerator, EarlyExitRule, Reading, ScriptedStep, replay

WORDS = 30  # tokens per step: more than the default min_probe_gap (24), less than probe_every (64)


def trace(answers: list[str | None], confidences: list[float] | float = 0.9, words: int = WORDS) -> list[ScriptedStep]:
    sure = confidences if isinstance(confidences, list) else [confidences] * len(answers)
    return [
        ScriptedStep(" ".join(f"s{index}w{word}" for word in range(words)), answer, confidence)
        for index, (answer, confidence) in enumerate(zip(answers, sure))
    ]


def step_ends(steps: list[ScriptedStep]) -> list[int]:
    """num_tokens at the last token of each step (where its blank line arrives)."""
    return list(accumulate(len(step.text.split()) for step in steps))


CHANGING_THEN_STABLE = ["3", None, "12", "18", "18", "18", "18", "18"]  # first "18" at step 3


@pytest.mark.parametrize(("stable_probes", "stop_step"), [(1, 0), (2, 4), (3, 5), (5, 7)])
def test_stops_at_the_first_step_with_enough_equal_confident_probes(stable_probes: int, stop_step: int) -> None:
    steps = trace(CHANGING_THEN_STABLE)
    outcome = replay(AnswerProbeAccelerator(stable_probes=stable_probes), steps)
    assert outcome.probe_points == tuple(step_ends(steps)[: stop_step + 1])  # one probe per step, at its end
    assert (outcome.stop_step, outcome.stopped_at) == (stop_step, step_ends(steps)[stop_step])
    assert outcome.answer == CHANGING_THEN_STABLE[stop_step]
    assert outcome.reasoning_tokens <= outcome.total_tokens == len(CHANGING_THEN_STABLE) * WORDS


def test_six_stable_probes_are_never_reached_in_eight_steps() -> None:
    outcome = replay(AnswerProbeAccelerator(stable_probes=6), trace(CHANGING_THEN_STABLE))
    assert outcome.stopped_at is None and outcome.num_probes == 8 and outcome.reasoning_tokens == 8 * WORDS


def test_a_stable_answer_below_the_confidence_bar_does_not_stop() -> None:
    outcome = replay(AnswerProbeAccelerator(), trace(["18"] * 8, 0.79))
    assert outcome.stopped_at is None and outcome.num_probes == 8


def test_it_stops_when_the_confidence_rises_past_the_bar() -> None:
    confidences = [0.9, 0.5, 0.6, 0.7, 0.81, 0.9]
    steps = trace(["5", "18", "18", "18", "18", "18"], confidences)
    outcome = replay(AnswerProbeAccelerator(confidence=0.8), steps)
    assert outcome.stop_step == 4  # "18" is stable from step 2 but first sure enough at step 4
    assert replay(AnswerProbeAccelerator(confidence=0.95), steps).stopped_at is None


def test_the_latest_probe_must_be_sure_not_an_earlier_one() -> None:
    steps = trace(["18", "18", "18"], [0.99, 0.5, 0.99])
    assert replay(AnswerProbeAccelerator(), steps).stop_step == 2  # step 1 repeats 18 but at 0.5


def test_unreadable_answers_never_agree() -> None:
    outcome = replay(AnswerProbeAccelerator(stable_probes=1), trace([None] * 6, 1.0))
    assert outcome.stopped_at is None and outcome.num_probes == 6


def test_an_answer_that_keeps_changing_never_stops() -> None:
    outcome = replay(AnswerProbeAccelerator(), trace([str(i) for i in range(8)], 1.0))
    assert outcome.stopped_at is None


def test_a_change_resets_the_count() -> None:
    steps = trace(["18", "18", "19", "18", "18"], [0.5, 0.5, 1.0, 1.0, 1.0])
    assert replay(AnswerProbeAccelerator(), steps).stop_step == 4  # 18, 18 were unsure; 19 broke the run


def test_short_steps_are_probed_no_closer_than_the_gap() -> None:
    steps = trace(["7"] * 20, 0.0, words=5)  # a boundary every 5 tokens
    outcome = replay(AnswerProbeAccelerator(min_probe_gap=24), steps)
    ends = step_ends(steps)
    assert outcome.probe_points == (25, 50, 75, 100)  # the first step end at least 24 tokens after the last probe
    assert set(outcome.probe_points) <= set(ends)


def test_without_boundaries_it_probes_every_n_tokens() -> None:
    steps = trace(["5", "6"], 0.0, words=200)  # two long steps: a boundary only at 200 and 400
    outcome = replay(AnswerProbeAccelerator(probe_every=64), steps)
    # the boundaries at 200 and 400 come only 8 and 16 tokens after a probe: closer than min_probe_gap (24)
    assert outcome.probe_points == (64, 128, 192, 256, 320, 384)
    off = replay(AnswerProbeAccelerator(probe_every=0), steps)
    assert off.probe_points == (200, 400)


def test_a_probe_before_any_finished_step_reads_nothing() -> None:
    # probe_every fires at token 64 inside the first step: the probe has no answer to read yet
    steps = trace(["5"], 1.0, words=100)
    outcome = replay(AnswerProbeAccelerator(stable_probes=1, probe_every=64), steps)
    assert outcome.probe_points == (64, 100) and outcome.stopped_at == 100


def test_transition_words_end_steps_too() -> None:
    text = "x is 4 " * 5  # 15 tokens
    steps = [ScriptedStep(text + "\nWait, check it again " + text, "4", 1.0)]
    outcome = replay(AnswerProbeAccelerator(min_probe_gap=8, probe_every=0, stable_probes=1), steps)
    assert outcome.probe_points == (16, 34)  # at "Wait," (nothing to read yet) and at the step's end
    assert outcome.stopped_at == 34


def test_state_is_dropped_after_each_request() -> None:
    accelerator = AnswerProbeAccelerator()
    replay(accelerator, trace(CHANGING_THEN_STABLE), request_id="a")
    replay(accelerator, trace(["1"] * 3), request_id="b")
    assert accelerator.num_tracked() == 0


def test_the_rule_alone() -> None:
    rule = EarlyExitRule(stable_probes=2, confidence=0.8)
    assert rule.settled([Reading("1", 0.9), Reading("1", 0.9)])
    assert not rule.settled([Reading("1", 0.9)])
    assert not rule.settled([Reading("1", 0.9), Reading("1", 0.79)])
    assert not rule.settled([Reading(None, 1.0), Reading(None, 1.0)])
    assert not rule.settled([Reading("2", 0.9), Reading("1", 0.9)])
