"""Tool use on ``/v1/messages``: Anthropic's tools, read through the chat route's tool machinery.

An Anthropic request with tools (or with ``tool_use`` / ``tool_result``
blocks in its history) is rewritten as the equivalent chat request:
``tools[].input_schema`` -> function ``parameters``, ``tool_choice``
``auto`` / ``any`` / ``tool`` / ``none`` -> ``auto`` / ``required`` / a named
function / ``none``, an assistant's ``tool_use`` blocks -> its
``tool_calls``, a user's ``tool_result`` blocks -> ``tool`` turns. The
prompt, the grammar of a forced call and the reading of a reply as a call
are then the chat route's own (tool_prompt.py, structured_output.py,
tool_calls.py), so both APIs call tools the same way. A reply that is a
call becomes a ``tool_use`` block with ``stop_reason: "tool_use"``.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from sagellm.engines.server.errors import BadParameterError
from sagellm.engines.server.protocol_anthropic import (
    AnthropicToolChoice,
    ContentBlock,
    MessageParam,
    MessagesRequest,
    StopReason,
    TextBlock,
    ToolUseBlock,
)
from sagellm.engines.server.protocol_openai import ChatCompletionRequest
from sagellm.engines.server.tool_calls import Reply

TOOL_BLOCKS = ("tool_use", "tool_result")


def uses_tools(request: MessagesRequest) -> bool:
    """Whether the request offers tools, chooses one or carries earlier calls: the chat route's tool path serves it."""
    return (
        bool(request.tools)
        or request.tool_choice is not None
        or any(
            not isinstance(m.content, str) and any(block.type in TOOL_BLOCKS for block in m.content)
            for m in request.messages
        )
    )


def chat_view(request: MessagesRequest) -> ChatCompletionRequest:
    """The chat request that asks the same: system, turns, tools and tool choice in OpenAI's shape."""
    if request.messages[-1].role == "assistant" and request.tools:
        raise BadParameterError("a final assistant turn (prefill) cannot be combined with tools", "messages")
    messages: list[dict[str, Any]] = []
    if request.system:
        system = request.system
        messages.append({"role": "system", "content": system if isinstance(system, str) else _joined(system)})
    for i, message in enumerate(request.messages):
        messages.extend(_turns(message, i))
    body: dict[str, Any] = {
        "messages": messages,
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "top_k": request.top_k,
        "stop": request.stop_sequences,
    }
    if request.tools:
        body["tools"] = [
            {
                "type": "function",
                "function": {"name": t.name, "description": t.description, "parameters": t.input_schema},
            }
            for t in request.tools
        ]
        body["tool_choice"] = _tool_choice(request.tool_choice)
    elif request.tool_choice is not None:
        raise BadParameterError("tool_choice needs tools", "tool_choice")
    return ChatCompletionRequest.model_validate(body)


def reply_blocks(reply: Reply) -> tuple[list[TextBlock | ToolUseBlock], StopReason | None]:
    """The message's content blocks, and ``"tool_use"`` as the stop reason when the reply is a call."""
    if not reply.tool_calls:
        return [TextBlock(text=reply.content or "")], None
    call = reply.tool_calls[0].function
    block = ToolUseBlock(id=f"toolu_{uuid.uuid4().hex[:24]}", name=call.name, input=json.loads(call.arguments))
    return [block], "tool_use"


def _tool_choice(choice: AnthropicToolChoice | None) -> Any:
    if choice is None or choice.type == "auto":
        return "auto"
    if choice.type == "any":
        return "required"
    if choice.type == "none":
        return "none"
    if not choice.name:
        raise BadParameterError('tool_choice type "tool" needs a name', "tool_choice")
    return {"type": "function", "function": {"name": choice.name}}


def _turns(message: MessageParam, index: int) -> list[dict[str, Any]]:
    """One Anthropic message as chat turns: tool results become ``tool`` turns, calls ``tool_calls``."""
    if isinstance(message.content, str):
        return [{"role": message.role, "content": message.content}]
    texts, calls, results = [], [], []
    for j, block in enumerate(message.content):
        where = f"messages[{index}].content[{j}]"
        if block.type == "text" and block.text is not None:
            texts.append(block.text)
        elif block.type == "tool_use" and message.role == "assistant" and block.name:
            arguments = json.dumps(block.input or {})
            calls.append({"id": block.id, "type": "function", "function": {"name": block.name, "arguments": arguments}})
        elif block.type == "tool_result" and message.role == "user" and block.tool_use_id:
            results.append({"role": "tool", "tool_call_id": block.tool_use_id, "content": _result_text(block, where)})
        else:
            raise BadParameterError(
                f"{where}: a {block.type!r} block is not supported in a {message.role} turn", "messages"
            )
    turns: list[dict[str, Any]] = list(results)
    if texts or calls or not results:
        turn: dict[str, Any] = {"role": message.role, "content": "".join(texts)}
        if calls:
            turn["tool_calls"] = calls
        turns.append(turn)
    return turns


def _result_text(block: ContentBlock, where: str) -> str:
    content = block.content
    text = content if isinstance(content, str) else _joined(content or [], where)
    return f"Error: {text}" if block.is_error else text


def _joined(blocks: list[ContentBlock], where: str = "system") -> str:
    parts = []
    for block in blocks:
        if block.type != "text" or block.text is None:
            raise BadParameterError(f"{where}: only text blocks are supported here, got {block.type!r}", "messages")
        parts.append(block.text)
    return "".join(parts)
