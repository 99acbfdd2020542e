"""OpenAI API request and response schemas (completions, chat, models, errors).

Requests validate strictly (``"5"`` is not a number, ``true`` is not a
count) so a wrong type is a 400 naming the field, never a silent coercion.
An unknown top-level parameter is a 400 (``TopLevelRequest``): a field this
server does not implement (``min_tokens``, ``guided_grammar``, ...) would otherwise be dropped while the client believes it applied. Known
ones it cannot honour (logit_bias, ...) are refused in
:mod:`sagellm.engines.server.sampling`. Inside messages, unknown keys are
ignored: clients echo back earlier replies with fields such as
``refusal: null``.
Ranges follow OpenAI's documented limits; the engine's own checks in
:class:`~sagellm.core.types.SamplingParams` still run after these.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sagellm.engines.engine.reasoning_options import MAX_SAMPLES

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


class CoTOptions(TopLevelRequest):
    """``cot``: chain-of-thought acceleration for this request (the server needs ``--cot-acceleration``).

    ``early_exit``: stop when answer probes find the answer stable;
    ``budget``: reasoning tokens at most (asked for in the prompt, then a
    forced answer); ``self_consistency``: samples voting, stopped early
    once a window agrees (not with ``stream``). Unknown keys are a 400.
    """

    early_exit: bool = False
    budget: int | None = Field(default=None, ge=1)
    self_consistency: int | None = Field(default=None, ge=1, le=MAX_SAMPLES)


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
    cot: CoTOptions | None = None
    # vLLM's structured-output extensions: at most one (on chat, not with response_format or forced tools either).
    guided_json: dict[str, Any] | str | None = None
    guided_choice: list[str] | None = Field(default=None, min_length=1)
    guided_regex: str | None = None


class CompletionRequest(SamplingFields):
    prompt: str | list[str] | list[int] | list[list[int]]
    echo: bool = False
    logprobs: int | None = Field(default=None, ge=0, le=5)
    suffix: str | None = None
    best_of: int | None = Field(default=None, ge=1)


class ContentPart(StrictRequest):
    type: str
    text: str | None = None


class FunctionCallIn(StrictRequest):
    name: str
    arguments: str  # a JSON object, as the API returned it


class ToolCallIn(StrictRequest):
    """A tool call of an earlier assistant turn, echoed back in the conversation."""

    id: str | None = None
    type: Literal["function"] = "function"
    function: FunctionCallIn


class ChatMessage(StrictRequest):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCallIn] | None = None  # assistant turns that called tools
    tool_call_id: str | None = None  # tool turns: which call this is the result of


class JsonSchemaFormat(StrictRequest):
    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None  # the schema is always enforced, strict or not


class ResponseFormat(StrictRequest):
    """``text`` (the default), ``json_object`` (any JSON object) or ``json_schema`` (a JSON document of the schema)."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class FunctionDefinition(StrictRequest):
    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    parameters: dict[str, Any] | None = None  # JSON schema of the arguments (None: no arguments)
    strict: bool | None = None  # arguments always match ``parameters`` where the output is constrained


class ChatTool(StrictRequest):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(StrictRequest):
    name: str


class NamedToolChoice(StrictRequest):
    type: Literal["function"]
    function: NamedFunction


class ChatCompletionRequest(SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    tools: list[ChatTool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None  # at most one call is made, which satisfies either value
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


class ReasoningInfo(Response):
    """What a ``cot`` request reports with its last choice: the answer, why it stopped, what it cost."""

    answer: str | None
    stopped_by: str  # finished, probe, budget, consistency or samples
    reasoning_tokens: int
    probes: int
    probe_tokens: int
    samples: int
    cancelled_samples: int
    generated_tokens: int
    answers: list[str | None]
    confidence: float | None


class CompletionChoice(Response):
    index: int
    text: str
    logprobs: CompletionLogprobs | None
    finish_reason: str | None
    reasoning: ReasoningInfo | None = _omit_none()


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


class FunctionCall(Response):
    name: str
    arguments: str  # a JSON object as text, as OpenAI sends it


class ToolCall(Response):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatResponseMessage(Response):
    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[ToolCall] | None = _omit_none()


class ChatChoice(Response):
    index: int
    message: ChatResponseMessage
    logprobs: ChatLogprobs | None
    finish_reason: str | None
    reasoning: ReasoningInfo | None = _omit_none()


class ChatCompletionResponse(Response):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class ToolCallDelta(Response):
    """A streamed tool call: sent whole, in one delta (the call is known only once its JSON is complete)."""

    index: int
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatDelta(Response):
    role: Literal["assistant"] | None = _omit_none()
    content: str | None = _omit_none()
    tool_calls: list[ToolCallDelta] | None = _omit_none()


class ChatChunkChoice(Response):
    index: int
    delta: ChatDelta
    logprobs: ChatLogprobs | None
    finish_reason: str | None
    reasoning: ReasoningInfo | None = _omit_none()


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
