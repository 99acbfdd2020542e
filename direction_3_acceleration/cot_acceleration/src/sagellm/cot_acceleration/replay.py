"""The engine's early-exit loop without a model: replay a scripted reasoning trace through an accelerator.

A trace is a list of reasoning steps, each with the answer (and the
confidence) a probe would read once that step is written. Replay shows the
accelerator the trace a token at a time (a token is one word here), as
the engine shows it each decode step, forks a "probe" wherever
``should_probe`` says so, reads the scripted answer through
``extract_answer(probe_suffix + answer + "}")`` as the engine would, and
stops where ``observe_probe`` says so. Tests pin the policy's decisions on
it and the benchmark counts what it would save; no figure from it says
anything about a real model's answers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from sagellm.core.protocols import CoTAccelerator
from sagellm.core.types import AnswerProbe, ReasoningProgress

WORD = re.compile(r"\S+\s*")


@dataclass(frozen=True, slots=True)
class ScriptedStep:
    """One reasoning step's text and what a probe taken after it reads (answer None: nothing readable)."""

    text: str
    answer: str | None
    confidence: float


@dataclass(frozen=True, slots=True)
class ReplayOutcome:
    """Where a replay ended: ``stopped_at`` tokens (None: the trace ran out) after ``stop_step`` steps."""

    total_tokens: int  # the whole trace, what decoding without early exit costs
    stopped_at: int | None
    stop_step: int | None  # index of the step whose probe stopped the request
    num_probes: int
    answer: str | None  # the stopping probe's answer, else the last step's
    probe_points: tuple[int, ...]  # num_tokens of every probe forked

    @property
    def reasoning_tokens(self) -> int:
        return self.total_tokens if self.stopped_at is None else self.stopped_at


def step_tokens(step: ScriptedStep) -> list[str]:
    """The step's words as tokens (each with the whitespace after it), the last closing the step with a blank line."""
    tokens = WORD.findall(step.text.strip())
    return tokens[:-1] + [tokens[-1].rstrip() + "\n\n"] if tokens else ["\n\n"]


def replay(accelerator: CoTAccelerator, steps: Sequence[ScriptedStep], request_id: str = "replay") -> ReplayOutcome:
    """Feed ``steps`` token by token; the accelerator's state for ``request_id`` is released at the end."""
    tokens = [(index, token) for index, step in enumerate(steps) for token in step_tokens(step)]
    text, probes, done_step = "", [], -1
    try:
        for num_tokens, (index, token) in enumerate(tokens, start=1):
            text += token
            if token.endswith("\n\n"):
                done_step = index  # a probe from here on reads this step's answer
            if not accelerator.should_probe(ReasoningProgress(request_id, text, token, num_tokens)):
                continue
            probes.append(num_tokens)
            scripted = steps[done_step] if done_step >= 0 else None
            output = f"{scripted.answer}}}" if scripted and scripted.answer is not None else "}"
            answer = accelerator.extract_answer(accelerator.probe_suffix + output)
            probe = AnswerProbe(request_id, num_tokens, output, answer, scripted.confidence if scripted else 0.0)
            if accelerator.observe_probe(probe):
                return ReplayOutcome(len(tokens), num_tokens, done_step, len(probes), answer, tuple(probes))
        last = steps[-1].answer if steps else None
        return ReplayOutcome(len(tokens), None, None, len(probes), last, tuple(probes))
    finally:
        accelerator.release(request_id)
