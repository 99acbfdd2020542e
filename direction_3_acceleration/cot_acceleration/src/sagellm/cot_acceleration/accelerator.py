"""The ``probe`` CoT accelerator: answer-probe early exit, ESC and TALE budgets behind core's CoTAccelerator.

It only decides; the engine forks the probes, draws the samples and
enforces the caps. Per request it keeps where it last probed and its last
``stable_probes`` readings, nothing else, and ``release`` drops that.

``should_probe`` is a decision the engine acts on: when it says True the
request counts as probed at ``progress.num_tokens`` (the next probe is at
least ``min_probe_gap`` tokens later), so ask it once per engine step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sagellm.core.config import Section
from sagellm.core.types import AnswerProbe, ReasoningProgress
from sagellm.cot_acceleration.answers import extract_answer
from sagellm.cot_acceleration.boundaries import ends_step
from sagellm.cot_acceleration.budget import budget_prompt
from sagellm.cot_acceleration.early_exit import EarlyExitRule, Reading, RequestProbes
from sagellm.cot_acceleration.options import ProbeOptions
from sagellm.cot_acceleration.self_consistency import consistent, majority_vote


class AnswerProbeAccelerator:
    """Probes at step boundaries (or every ``probe_every`` tokens), stops on a stable, confident answer.

    Options (all keyword, see :mod:`sagellm.cot_acceleration.options` for
    the defaults' reasons): ``probe_suffix``, ``max_probe_tokens``,
    ``esc_window``, ``stable_probes``, ``confidence``, ``min_probe_gap``,
    ``probe_every``.
    """

    name = "probe"

    def __init__(self, **options: Any) -> None:
        self.options = ProbeOptions.from_mapping(options)
        self.rule = EarlyExitRule(self.options.stable_probes, self.options.confidence)
        self._requests: dict[str, RequestProbes] = {}

    @classmethod
    def from_config(cls, section: Section, **_: Any) -> AnswerProbeAccelerator:
        """Built by ``registry.create_cot_accelerator`` from ``cot_acceleration.options``."""
        return cls(**section.options)

    @property
    def probe_suffix(self) -> str:
        return self.options.probe_suffix

    @property
    def max_probe_tokens(self) -> int:
        return self.options.max_probe_tokens

    @property
    def esc_window(self) -> int:
        return self.options.esc_window

    def budget_prompt(self, prompt: str, budget: int) -> str:
        return budget_prompt(prompt, budget)

    def should_probe(self, progress: ReasoningProgress) -> bool:
        if progress.num_tokens <= 0 or not progress.text:
            return False
        request = self._requests.get(progress.request_id)
        since = progress.num_tokens - (request.last_probe_at if request else 0)
        if since < max(1, self.options.min_probe_gap):
            return False
        due = 0 < self.options.probe_every <= since
        if not (due or ends_step(progress.text, progress.new_text)):
            return False
        self._request(progress.request_id).last_probe_at = progress.num_tokens
        return True

    def extract_answer(self, text: str) -> str | None:
        return extract_answer(text)

    def observe_probe(self, probe: AnswerProbe) -> bool:
        request = self._request(probe.request_id)
        request.record(probe.num_tokens, Reading(probe.answer, probe.confidence))
        return self.rule.settled(request.readings)

    def consistent(self, answers: Sequence[str | None]) -> str | None:
        return consistent(answers, self.options.esc_window)

    def vote(self, answers: Sequence[str | None]) -> str | None:
        """The final answer when no window agreed: majority of all samples drawn, ties to the first seen."""
        return majority_vote(answers)

    def release(self, request_id: str) -> None:
        self._requests.pop(request_id, None)

    def num_tracked(self) -> int:
        """Requests with state held (probed or observed, not yet released): a leak shows here."""
        return len(self._requests)

    def _request(self, request_id: str) -> RequestProbes:
        request = self._requests.get(request_id)
        if request is None:
            request = self._requests[request_id] = RequestProbes(self.options.stable_probes)
        return request
