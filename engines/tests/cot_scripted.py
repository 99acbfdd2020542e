"""A scripted CoTAccelerator for the engine's chain-of-thought tests: decisions from a script, not a model.

SmolLM2-135M cannot reason, so the tests check the mechanism -- where a
request exits, what a probe prefills, which samples are cancelled --
against decisions they fix in advance. ``answers`` is a synthetic trace:
the answer "read" at each probe point (reasoning tokens -> answer), so a
test knows exactly where the answer stabilises. Registered in-process as
``scripted`` (``cot_acceleration: {implementation: scripted, options: ...}``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from sagellm.core import registry
from sagellm.core.types import AnswerProbe, ReasoningProgress

SUFFIX = "\nAnswer:"


class ScriptedAccelerator:
    def __init__(
        self,
        probe_every: int = 4,
        max_probe_tokens: int = 4,
        esc_window: int = 2,
        answers: dict[int, str] | None = None,
        stable: int = 2,
        never_stop: Sequence[str] = (),
        answer: str | None = None,
        answer_is_text: bool = False,
    ) -> None:
        self.probe_every = probe_every
        self._max_probe_tokens = max_probe_tokens
        self._esc_window = esc_window
        self.answers = answers  # None: stop at every probe (unless the request is in never_stop)
        self.stable = stable
        self.never_stop = tuple(never_stop)
        self.answer = answer  # extract_answer's constant reading of any text (None: what follows the suffix)
        self.answer_is_text = answer_is_text  # the whole text is "the answer": samples' texts land in the report
        self.probes: list[AnswerProbe] = []
        self.progress: list[ReasoningProgress] = []
        self.released: list[str] = []
        self._trace: dict[str, list[str]] = {}

    @classmethod
    def from_config(cls, section: Any, **_: Any) -> ScriptedAccelerator:
        options = dict(section.options)
        if "answers" in options:
            options["answers"] = {int(k): v for k, v in options["answers"].items()}
        return cls(**options)

    @property
    def name(self) -> str:
        return "scripted"

    @property
    def probe_suffix(self) -> str:
        return SUFFIX

    @property
    def max_probe_tokens(self) -> int:
        return self._max_probe_tokens

    @property
    def esc_window(self) -> int:
        return self._esc_window

    def budget_prompt(self, prompt: str, budget: int) -> str:
        return f"{prompt} Think for at most {budget} tokens."

    def should_probe(self, progress: ReasoningProgress) -> bool:
        self.progress.append(progress)
        return progress.num_tokens % self.probe_every == 0

    def extract_answer(self, text: str) -> str | None:
        if self.answer_is_text:
            return text
        if self.answer is not None:
            return self.answer
        if SUFFIX not in text:
            return None
        found = text.rsplit(SUFFIX, 1)[1].strip()
        return found or None

    def observe_probe(self, probe: AnswerProbe) -> bool:
        self.probes.append(probe)
        if self.never_stop and probe.request_id.endswith(self.never_stop):
            return False
        if self.answers is None:
            return True
        trace = self._trace.setdefault(probe.request_id, [])
        trace.append(self.answers.get(probe.num_tokens, f"unscripted@{probe.num_tokens}"))
        return len(trace) >= self.stable and len(set(trace[-self.stable :])) == 1

    def consistent(self, answers: Sequence[str | None]) -> str | None:
        window = list(answers[-self._esc_window :])
        if len(window) < self._esc_window or window[0] is None or len(set(window)) != 1:
            return None
        return window[0]

    def vote(self, answers: Sequence[str | None]) -> str | None:
        counts = Counter(a for a in answers if a is not None)
        return max(counts, key=counts.__getitem__) if counts else None  # ties: the first seen

    def release(self, request_id: str) -> None:
        self.released.append(request_id)


def register() -> None:
    registry.register("cot_accelerator", "scripted", ScriptedAccelerator)
