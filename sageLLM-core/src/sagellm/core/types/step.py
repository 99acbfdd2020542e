"""What the engine hands back after each step."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StepOutput:
    """New tokens for one request after one engine step.

    ``finish_reason`` is ``None`` while the request runs, else ``"stop"``,
    ``"length"`` or ``"abort"`` (OpenAI's vocabulary).
    """

    request_id: str
    new_token_ids: tuple[int, ...]
    new_text: str = ""
    finish_reason: str | None = None
    num_prompt_tokens: int = 0
    num_output_tokens: int = 0
    num_cached_tokens: int = 0
    logprobs: tuple[float, ...] | None = None
    # Per new token, the most likely alternatives as (token id, logprob), when SamplingParams.logprobs > 0.
    top_logprobs: tuple[tuple[tuple[int, float], ...], ...] | None = None

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None
