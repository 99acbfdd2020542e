"""Conformance suite for :class:`sagellm.core.protocols.CoTAccelerator`."""

from __future__ import annotations

from sagellm.core.protocols import CoTAccelerator
from sagellm.core.types import AnswerProbe, ReasoningProgress

STEPS = ["Let x be the number of apples.", "Then 3x = 12.", "Wait, check: 3 * 4 = 12.", "So x = 4."]
MANY = 16  # probes: any accelerator that stops on a stable, confident answer has stopped by then


def _probe(request_id: str, num_tokens: int, answer: str | None, confidence: float) -> AnswerProbe:
    return AnswerProbe(request_id, num_tokens, f"{answer}}}", answer, confidence)


def _trace(request_id: str) -> list[ReasoningProgress]:
    """A reasoning trace shown one step at a time: blank lines between steps, ~8 tokens a word."""
    shown: list[ReasoningProgress] = []
    text = ""
    for repeat in range(8):
        for step in STEPS:
            new_text = f"{step} ({repeat})\n\n"
            text += new_text
            shown.append(ReasoningProgress(request_id, text, new_text, 8 * len(text.split())))
    return shown


class CoTAcceleratorConformance:
    """Inherit and implement :meth:`make_accelerator` (a fresh accelerator with its default options)."""

    def make_accelerator(self) -> CoTAccelerator:
        raise NotImplementedError

    def test_implements_the_protocol(self) -> None:
        accelerator = self.make_accelerator()
        assert isinstance(accelerator, CoTAccelerator)
        assert isinstance(accelerator.name, str) and accelerator.name
        assert isinstance(accelerator.probe_suffix, str) and accelerator.probe_suffix
        for count in (accelerator.max_probe_tokens, accelerator.esc_window):
            assert isinstance(count, int) and not isinstance(count, bool) and count >= 1

    def test_no_probe_before_any_reasoning(self) -> None:
        accelerator = self.make_accelerator()
        assert accelerator.should_probe(ReasoningProgress("a", "", "", 0)) is False

    def test_should_probe_answers_a_bool_for_every_step(self) -> None:
        accelerator = self.make_accelerator()
        assert all(isinstance(accelerator.should_probe(progress), bool) for progress in _trace("a"))

    def test_budget_prompt_keeps_the_prompt_and_names_the_budget(self) -> None:
        prompt = "Natalia sold 48 clips in April. How many did she sell?"
        asked = self.make_accelerator().budget_prompt(prompt, 137)
        assert prompt in asked and "137" in asked

    def test_a_probe_reads_its_answer(self) -> None:
        accelerator = self.make_accelerator()
        assert accelerator.extract_answer(accelerator.probe_suffix + "42}") == "42"
        assert accelerator.extract_answer("") is None

    def test_a_stable_confident_answer_stops_and_none_or_doubt_never_does(self) -> None:
        accelerator = self.make_accelerator()
        assert self._probes_to_stop(accelerator, "sure", "7", 1.0) is not None, "never stopped on a certain answer"
        assert self._probes_to_stop(accelerator, "unread", None, 1.0) is None, "None answers must never stop"
        assert self._probes_to_stop(accelerator, "unsure", "7", 0.0) is None, "confidence 0 must never stop"

    def test_requests_keep_apart_and_release_forgets(self) -> None:
        needed = self._probes_to_stop(self.make_accelerator(), "a", "7", 1.0)
        assert needed is not None
        if needed == 1:
            return  # one probe is enough: nothing carried between probes could leak
        accelerator = self.make_accelerator()
        for index in range(needed - 1):
            assert accelerator.observe_probe(_probe("a", 100 * (index + 1), "7", 1.0)) is False
        assert accelerator.observe_probe(_probe("b", 100, "7", 1.0)) is False, "request b saw request a's probes"
        accelerator.release("a")
        assert accelerator.observe_probe(_probe("a", 1000, "7", 1.0)) is False, "release kept request a's probes"
        try:
            accelerator.release("a")
            accelerator.release("never-seen")
        except Exception as exc:  # noqa: BLE001 -- any exception breaks the contract
            raise AssertionError(f"release of an ended or unknown request must be a no-op: {exc!r}") from exc

    def test_consistent_needs_a_full_agreeing_window(self) -> None:
        accelerator = self.make_accelerator()
        window = accelerator.esc_window
        assert accelerator.consistent([]) is None
        assert accelerator.consistent([None] * window) is None
        assert accelerator.consistent(["7"] * window) == "7"
        if window > 1:
            assert accelerator.consistent(["7"] * (window - 1)) is None
            assert accelerator.consistent(["7"] * (window - 1) + ["8"]) is None
            assert accelerator.consistent(["7"] * (window - 1) + [None]) is None

    def test_vote_takes_the_most_frequent_answer(self) -> None:
        accelerator = self.make_accelerator()
        assert accelerator.vote([]) is None
        assert accelerator.vote([None, None]) is None
        assert accelerator.vote([None, "8"]) == "8"
        assert accelerator.vote(["7", "8", None, "7", None, None]) == "7"
        assert accelerator.vote(["8", "7"]) in ("7", "8")  # a tie: either, by the accelerator's rule
        assert accelerator.vote(["8", "7"]) == accelerator.vote(["8", "7"])

    def test_decisions_are_deterministic(self) -> None:
        first, second = self.make_accelerator(), self.make_accelerator()
        assert [first.should_probe(p) for p in _trace("a")] == [second.should_probe(p) for p in _trace("a")]
        readings = [("12", 0.9), (None, 0.0), ("18", 0.6), ("18", 0.85), ("18", 0.99), ("18", 1.0)]
        decisions = []
        for accelerator in (first, second):
            probes = [_probe("a", 50 * (i + 1), answer, conf) for i, (answer, conf) in enumerate(readings)]
            decisions.append([accelerator.observe_probe(probe) for probe in probes])
        assert decisions[0] == decisions[1]

    def _probes_to_stop(
        self, accelerator: CoTAccelerator, request_id: str, answer: str | None, confidence: float
    ) -> int | None:
        """How many equal probes it took to stop (None: not within MANY); the request is released after."""
        try:
            for index in range(MANY):
                if accelerator.observe_probe(_probe(request_id, 100 * (index + 1), answer, confidence)):
                    return index + 1
            return None
        finally:
            accelerator.release(request_id)
