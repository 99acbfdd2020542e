"""Collect a handle's outputs into whole choices, for non-streaming answers and usage blocks."""

from __future__ import annotations

from dataclasses import dataclass, field

from sagellm.core.types import StepOutput
from sagellm.engines.server.request_handle import RequestHandle


@dataclass(slots=True)
class ChoiceResult:
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)  # of each sampled token, when asked for
    finish_reason: str | None = None
    num_output_tokens: int = 0

    def add(self, output: StepOutput) -> None:
        self.text += output.new_text
        self.token_ids.extend(output.new_token_ids)
        self.logprobs.extend(output.logprobs or ())
        self.finish_reason = output.finish_reason
        self.num_output_tokens = output.num_output_tokens


async def collect(handle: RequestHandle) -> list[ChoiceResult]:
    results = [ChoiceResult() for _ in range(handle.num_choices)]
    async for index, output in handle.outputs():
        results[index].add(output)
    return results


def prompt_tokens(handle: RequestHandle, n: int) -> int:
    """Each prompt counts once, however many choices (n) were sampled from it."""
    return sum(handle.num_prompt_tokens[::n])


@dataclass(frozen=True, slots=True)
class ResponseMeta:
    """What every response and chunk of one API request repeats."""

    id: str
    created: int
    model: str
