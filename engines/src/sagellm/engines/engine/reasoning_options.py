"""ReasoningOptions: what a request asks of the engine's chain-of-thought accelerator.

One request may combine them: ``self_consistency`` draws that many samples
(early-stopped by the accelerator's ``consistent``), and each sample -- or
the single request -- may exit early on answer probes and be capped at
``budget`` reasoning tokens. Validated on construction, like
``SamplingParams``, so a bad value is the caller's 400, not a failure
inside a batched step.
"""

from __future__ import annotations

from dataclasses import dataclass

from sagellm.core.errors import InvalidRequestError

MAX_SAMPLES = 64  # each sample is a running sequence; more would crowd out every other request


@dataclass(frozen=True, slots=True)
class ReasoningOptions:
    """``early_exit``: probe at reasoning step boundaries, stop when the accelerator says the answer is stable.

    ``budget``: reasoning tokens at most; at the cap a last probe forces the
    answer (and the prompt asks for brevity, where the caller has its text).
    ``self_consistency``: samples at most, ``esc_window`` of them in flight,
    stopped once a window agrees (ESC); None or 1: a single sample.
    """

    early_exit: bool = False
    budget: int | None = None
    self_consistency: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.early_exit, bool):
            raise InvalidRequestError(f"cot.early_exit must be a boolean, got {self.early_exit!r}")
        if self.budget is not None and not (_int(self.budget) and self.budget >= 1):
            raise InvalidRequestError(f"cot.budget must be an integer >= 1, got {self.budget!r}")
        samples = self.self_consistency
        if samples is not None and not (_int(samples) and 1 <= samples <= MAX_SAMPLES):
            raise InvalidRequestError(f"cot.self_consistency must be an integer in [1, {MAX_SAMPLES}], got {samples!r}")

    @property
    def num_samples(self) -> int:
        return self.self_consistency or 1

    @property
    def is_sampled(self) -> bool:
        """Whether the request runs as a self-consistency group (several samples voting)."""
        return self.num_samples > 1

    @property
    def probes(self) -> bool:
        """Whether a sample of this request ever forks a probe (early exit, or a forced answer at the cap)."""
        return self.early_exit or self.budget is not None


def _int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
