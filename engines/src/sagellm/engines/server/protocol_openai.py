"""OpenAI API request and response schemas (completions, chat, models, errors).

Requests validate strictly (``"5"`` is not a number, ``true`` is not a
count) so a wrong type is a 400 naming the field, never a silent coercion.
An unknown top-level parameter is a 400 (``TopLevelRequest``): a field this
server does not implement (``guided_json``, ``min_tokens``, ...) would
otherwise be dropped while the client believes it applied. Known ones it
cannot honour (tools, logit_bias, ...) are refused in
:mod:`sagellm.engines.server.sampling`. Inside messages, unknown keys are
ignored: clients echo back earlier replies with fields such as
``refusal: null``.
Ranges follow OpenAI's documented limits; the engine's own checks in
:class:`~sagellm.core.types.SamplingParams` still run after these.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# Largest n (choices per request): each choice is an engine request in the waiting queue.
MAX_N = 16
SEED_MIN, SEED_MAX = -(2**63), 2**64 - 1  # the 64-bit range clients send (torch.Generator's, as vLLM takes)


class StrictRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class TopLevelRequest(StrictRequest):
    """A request body: every parameter must be one this server knows."""

    model_config = ConfigDict(strict=True, extra="forbid")


class StreamOptions(StrictRequest):
    include_usage: bool = False


class SamplingFields(TopLevelRequest):
    """Fields shared by /v1/completions and /v1/chat/completions (plus vLLM's common extensions)."""

    model: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=-1)  # -1 or 0: disabled (vLLM uses -1)
    min_p: float | None = Field(default=None, ge=0.0, le=1.0)
    n: int = Field(default=1, ge=1, le=MAX_N)
    seed: int | None = Field(default=None, ge=SEED_MIN, le=SEED_MAX)
    stop: str | list[str] | None = None
    stop_token_ids: list[int] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    repetition_penalty: float | None = Field(default=None, gt=0.0)
    ignore_eos: bool = False
    logit_bias: dict[str, float] | None = None
    user: str | None = None


class CompletionRequest(SamplingFields):
    prompt: str | list[str] | list[int] | list[list[int]]
    echo: bool = False
    logprobs: int | None = Field(default=None, ge=0, le=5)
    suffix: str | None = None
    best_of: int | None = Field(default=None, ge=1)


class ContentPart(StrictRequest):
    type: str
    text: str | None = None


class ChatMessage(StrictRequest):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None


class ResponseFormat(StrictRequest):
    type: str


class ChatCompletionRequest(SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    tools: list[Any] | None = None
    tool_choice: Any = None
    response_format: ResponseFormat | None = None


# ------------------------------------------------------------------ responses
def _omit_none() -> Any:
    """A field left out of the JSON when None (a chat delta carries only what changed)."""
    return Field(default=None, exclude_if=lambda value: value is None)


class Response(BaseModel):
    """Base of response bodies: every field is sent, nulls included, as OpenAI does."""


class PromptTokensDetails(Response):
    cached_tokens: int = 0


class Usage(Response):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = _omit_none()


class CompletionLogprobs(Response):
    tokens: list[str]
    token_logprobs: list[float | None]
    top_logprobs: list[dict[str, float]] | None
    text_offset: list[int]


class CompletionChoice(Response):
    index: int
    text: str
    logprobs: CompletionLogprobs | None
    finish_reason: str | None


class CompletionResponse(Response):
    """Also each streamed chunk; there ``usage`` appears only in the last one (include_usage)."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = _omit_none()


class ChatTokenLogprob(Response):
    token: str
    logprob: float
    bytes: list[int]
    top_logprobs: list[Any] = Field(default_factory=list)


class ChatLogprobs(Response):
    content: list[ChatTokenLogprob]


class ChatResponseMessage(Response):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(Response):
    index: int
    message: ChatResponseMessage
    logprobs: ChatLogprobs | None
    finish_reason: str | None


class ChatCompletionResponse(Response):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class ChatDelta(Response):
    role: Literal["assistant"] | None = _omit_none()
    content: str | None = _omit_none()


class ChatChunkChoice(Response):
    index: int
    delta: ChatDelta
    logprobs: ChatLogprobs | None
    finish_reason: str | None


class ChatCompletionChunk(Response):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: Usage | None = _omit_none()


class ModelCard(Response):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "sagellm"
    max_model_len: int


class ModelList(Response):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorInfo(Response):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(Response):
    error: ErrorInfo
