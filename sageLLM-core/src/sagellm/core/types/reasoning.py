"""What a chain-of-thought accelerator is shown of a reasoning request, and what it is told back."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ReasoningProgress:
    """A reasoning request as it decodes: everything it has generated so far.

    ``new_text`` is what the last engine step added, so a step boundary
    ("\\n\\n", "Wait") can be found without rescanning ``text``.
    """

    request_id: str
    text: str
    new_text: str
    num_tokens: int


@dataclass(frozen=True, slots=True)
class AnswerProbe:
    """What a probe read: the request forked at ``num_tokens`` with the probe suffix, decoded greedily.

    ``answer`` is None when no answer could be extracted; ``confidence`` is
    the probability the model gave the answer's tokens (their geometric mean,
    0 to 1).
    """

    request_id: str
    num_tokens: int
    text: str
    answer: str | None
    confidence: float
