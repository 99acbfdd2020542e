"""The accelerator's per-request state and its budget prompt."""

from __future__ import annotations

import pytest

from sagellm.core.errors import InvalidRequestError
from sagellm.core.types import AnswerProbe, ReasoningProgress
from sagellm.cot_acceleration import BUDGET_INSTRUCTION, AnswerProbeAccelerator, budget_prompt


def progress(request_id: str, text: str, new_text: str, num_tokens: int) -> ReasoningProgress:
    return ReasoningProgress(request_id, text, new_text, num_tokens)


def test_budget_prompt_is_tales_instruction_after_the_prompt() -> None:
    assert BUDGET_INSTRUCTION.format(budget=50) == "Let's think step by step and use less than 50 tokens:"
    assert budget_prompt("What is 2+2?", 50) == "What is 2+2?\nLet's think step by step and use less than 50 tokens:"
    assert budget_prompt("What is 2+2?\n", 50).count("\n") == 1
    assert budget_prompt("", 50) == BUDGET_INSTRUCTION.format(budget=50)
    assert AnswerProbeAccelerator().budget_prompt("Q", 7) == budget_prompt("Q", 7)


@pytest.mark.parametrize("bad", [0, -5, 2.5, True, "100"])
def test_a_bad_budget_is_an_invalid_request(bad: object) -> None:
    with pytest.raises(InvalidRequestError):
        budget_prompt("Q", bad)  # type: ignore[arg-type]


def test_should_probe_waits_for_the_gap_and_a_boundary() -> None:
    accelerator = AnswerProbeAccelerator(min_probe_gap=24, probe_every=64)
    assert not accelerator.should_probe(progress("a", "x\n\n", "\n\n", 10))  # a boundary, but too early
    assert accelerator.should_probe(progress("a", "x\n\n", "\n\n", 30))
    assert not accelerator.should_probe(progress("a", "x\n\ny\n\n", "\n\n", 40))  # 10 after the last probe
    assert not accelerator.should_probe(progress("a", "x\n\ny z", " z", 93))  # 63 tokens, no boundary
    assert accelerator.should_probe(progress("a", "x\n\ny z w", " w", 94))  # 64 tokens: probe anyway
    assert accelerator.num_tracked() == 1
    accelerator.release("a")
    assert accelerator.num_tracked() == 0


def test_a_probe_the_engine_forced_also_counts_as_the_last_probe() -> None:
    accelerator = AnswerProbeAccelerator(min_probe_gap=24)
    accelerator.observe_probe(AnswerProbe("a", 100, "5}", "5", 0.1))  # e.g. at a budget cap
    assert not accelerator.should_probe(progress("a", "x\n\n", "\n\n", 110))
    assert accelerator.should_probe(progress("a", "x\n\n", "\n\n", 124))


def test_requests_do_not_share_state() -> None:
    accelerator = AnswerProbeAccelerator()
    assert accelerator.should_probe(progress("a", "x\n\n", "\n\n", 30))
    assert accelerator.should_probe(progress("b", "x\n\n", "\n\n", 30))  # a's probe does not space b's
    assert not accelerator.observe_probe(AnswerProbe("a", 30, "5}", "5", 0.9))
    assert not accelerator.observe_probe(AnswerProbe("b", 30, "5}", "5", 0.9))  # b has one reading, not two
    assert accelerator.observe_probe(AnswerProbe("a", 60, "5}", "5", 0.9))
    accelerator.release("a")
    accelerator.release("b")
    accelerator.release("b")
    assert accelerator.num_tracked() == 0
