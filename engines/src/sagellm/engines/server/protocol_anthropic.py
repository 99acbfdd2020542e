"""Anthropic Messages API schemas: the request, the message, the stream events, errors.

Text and tool blocks are served (``tool_use`` from the assistant,
``tool_result`` from the user, see anthropic_tools.py); other block types
(images, documents) are refused with a 400 by
:mod:`sagellm.engines.server.prompts` rather than dropped, so a client never
gets an answer to a different question.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class StrictRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class ContentBlock(StrictRequest):
    type: str
    text: str | None = None
    # tool_use (an earlier call of the assistant)
    id: str | None = None
    name: str | None = None
    input: dict[str, Any] | None = None
    # tool_result (its outcome, from the user): text, or text blocks
    tool_use_id: str | None = None
    content: str | list[ContentBlock] | None = None
    is_error: bool | None = None


class AnthropicTool(StrictRequest):
    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    input_schema: dict[str, Any]
    type: Literal["custom"] | None = None


class AnthropicToolChoice(StrictRequest):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None  # type "tool": which one
    disable_parallel_tool_use: bool | None = None  # at most one call is made, which satisfies either value


class MessageParam(StrictRequest):
    role: Literal["user", "assistant"]
    content: str | list[ContentBlock]


class MessagesRequest(StrictRequest):
    model_config = ConfigDict(strict=True, extra="forbid")  # an unknown parameter is a 400, never ignored

    model: str | None = None
    max_tokens: int = Field(ge=1)
    messages: list[MessageParam] = Field(min_length=1)
    system: str | list[ContentBlock] | None = None
    stop_sequences: list[str] | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=1.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=0)
    stream: bool = False
    metadata: dict[str, Any] | None = None
    tools: list[AnthropicTool] | None = None
    tool_choice: AnthropicToolChoice | None = None


# ------------------------------------------------------------------ responses
StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use"]


class TextBlock(BaseModel):
    type: Literal["text"] = "text"
    text: str


class ToolUseBlock(BaseModel):
    type: Literal["tool_use"] = "tool_use"
    id: str
    name: str
    input: dict[str, Any]


class AnthropicUsage(BaseModel):
    input_tokens: int
    output_tokens: int


class Message(BaseModel):
    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    model: str
    content: list[TextBlock | ToolUseBlock]
    stop_reason: StopReason | None
    stop_sequence: str | None
    usage: AnthropicUsage


class MessageStartEvent(BaseModel):
    type: Literal["message_start"] = "message_start"
    message: Message


class ContentBlockStartEvent(BaseModel):
    type: Literal["content_block_start"] = "content_block_start"
    index: int = 0
    content_block: TextBlock | ToolUseBlock = Field(default_factory=lambda: TextBlock(text=""))


class PingEvent(BaseModel):
    type: Literal["ping"] = "ping"


class TextDelta(BaseModel):
    type: Literal["text_delta"] = "text_delta"
    text: str


class InputJsonDelta(BaseModel):
    type: Literal["input_json_delta"] = "input_json_delta"
    partial_json: str


class ContentBlockDeltaEvent(BaseModel):
    type: Literal["content_block_delta"] = "content_block_delta"
    index: int = 0
    delta: TextDelta | InputJsonDelta


class ContentBlockStopEvent(BaseModel):
    type: Literal["content_block_stop"] = "content_block_stop"
    index: int = 0


class MessageDelta(BaseModel):
    stop_reason: StopReason | None
    stop_sequence: str | None


class DeltaUsage(BaseModel):
    output_tokens: int


class MessageDeltaEvent(BaseModel):
    type: Literal["message_delta"] = "message_delta"
    delta: MessageDelta
    usage: DeltaUsage


class MessageStopEvent(BaseModel):
    type: Literal["message_stop"] = "message_stop"


class AnthropicError(BaseModel):
    type: str
    message: str


class AnthropicErrorResponse(BaseModel):
    """Both the body of an error response and the data of a stream's ``error`` event."""

    type: Literal["error"] = "error"
    error: AnthropicError
