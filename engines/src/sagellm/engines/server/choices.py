"""Collect a handle's outputs into whole choices, for non-streaming answers and usage blocks."""

from __future__ import annotations

from dataclasses import dataclass, field

from sagellm.core.types import StepOutput
from sagellm.engines.engine.reasoning_output import ReasoningOutput, ReasoningReport
from sagellm.engines.server.protocol_openai import PromptTokensDetails, Usage
from sagellm.engines.server.request_handle import RequestHandle

Alternatives = tuple[tuple[int, float], ...]  # (token id, logprob), most likely first


@dataclass(slots=True)
class ChoiceResult:
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)  # of each sampled token, when asked for
    top_logprobs: list[Alternatives] = field(default_factory=list)  # per token, when top alternatives were asked for
    finish_reason: str | None = None
    num_output_tokens: int = 0
    num_cached_tokens: int = 0  # prompt tokens the prefix cache served
    reasoning: ReasoningReport | None = None  # a ``cot`` request's answer and cost, with its last output

    def add(self, output: StepOutput) -> None:
        self.text += output.new_text
        self.token_ids.extend(output.new_token_ids)
        self.logprobs.extend(output.logprobs or ())
        self.top_logprobs.extend(output.top_logprobs or ())
        self.num_cached_tokens = max(self.num_cached_tokens, output.num_cached_tokens)
        self.finish_reason = output.finish_reason
        self.num_output_tokens = output.num_output_tokens
        if isinstance(output, ReasoningOutput):
            self.reasoning = output.reasoning


async def collect(handle: RequestHandle) -> list[ChoiceResult]:
    results = [ChoiceResult() for _ in range(handle.num_choices)]
    async for index, output in handle.outputs():
        results[index].add(output)
    return results


def prompt_tokens(handle: RequestHandle, n: int) -> int:
    """Each prompt counts once, however many choices (n) were sampled from it."""
    return sum(handle.num_prompt_tokens[::n])


def usage_of(handle: RequestHandle, n: int, results: list[ChoiceResult]) -> Usage:
    """OpenAI's usage block; ``cached_tokens`` lets clients (and ``sagellm bench``) see prefix-cache hits."""
    prompt = prompt_tokens(handle, n)
    completion = sum(r.num_output_tokens for r in results)
    cached = sum(r.num_cached_tokens for r in results[::n])
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=cached),
    )


@dataclass(frozen=True, slots=True)
class ResponseMeta:
    """What every response and chunk of one API request repeats."""

    id: str
    created: int
    model: str
