"""A chat prompt that involves tools: the tools shown to the model, earlier calls and their results.

A chat template that knows tools (it mentions ``tools``: Qwen, Hermes,
Llama 3.1) renders them itself, from the ``tools`` variable and the
messages' ``tool_calls``, as transformers passes them. Other templates
(SmolLM2's plain ChatML) get the tools described in the system message,
with the one call format ``tool_calls.py`` reads back, and earlier calls
written into the assistant turn as that same JSON. Tool results are
``tool`` turns either way. A conversation without tools goes through
:func:`~sagellm.engines.server.prompts.encode_openai_chat` unchanged.
"""

from __future__ import annotations

import json
from typing import Any

from sagellm.engines.server.errors import BadParameterError
from sagellm.engines.server.prompts import _text_of, encode_openai_chat
from sagellm.engines.server.protocol_openai import ChatCompletionRequest, ChatMessage, ChatTool
from sagellm.engines.server.tool_calls import ToolUse, parameters_of
from sagellm.engines.tokenizer import Tokenizer, render_chat

_ROLE_ALIASES = {"developer": "system"}
TOOL_INSTRUCTIONS = (
    "You can call these tools (each with the JSON schema of its arguments):\n{tools}\n\n"
    'To call a tool, reply with only a JSON object: {{"name": <tool name>, "arguments": <arguments object>}}.'
)


def encode_chat_request(tokenizer: Tokenizer, request: ChatCompletionRequest, use: ToolUse | None) -> list[int]:
    """The prompt's token ids: with the tools of ``use`` shown, and any earlier calls and results."""
    if use is None and not any(m.role == "tool" or m.tool_calls for m in request.messages):
        return encode_openai_chat(tokenizer, request.messages)
    template = tokenizer.chat_template
    knows_tools = template is not None and "tools" in template
    conversation = [_turn(message, i, knows_tools) for i, message in enumerate(request.messages)]
    variables: dict[str, Any] = dict(tokenizer.special_tokens)
    if use is not None and knows_tools:
        variables["tools"] = [tool.model_dump(exclude_none=True) for tool in use.tools]
    elif use is not None:
        conversation = _with_instructions(conversation, use.tools)
    text = render_chat(template, conversation, True, **variables)
    return tokenizer.encode(text, add_special_tokens=False)


def _turn(message: ChatMessage, index: int, knows_tools: bool) -> dict[str, Any]:
    role = _ROLE_ALIASES.get(message.role, message.role)
    content = _text_of(message.content, "messages", f"messages[{index}].content")
    turn: dict[str, Any] = {"role": role, "content": content}
    if message.tool_call_id is not None:
        turn["tool_call_id"] = message.tool_call_id
    if not message.tool_calls:
        return turn
    calls = [(call.function.name, _arguments(call.function.arguments, index)) for call in message.tool_calls]
    if knows_tools:
        turn["tool_calls"] = [
            {"type": "function", "function": {"name": name, "arguments": arguments}} for name, arguments in calls
        ]
    else:
        written = [json.dumps({"name": name, "arguments": arguments}) for name, arguments in calls]
        turn["content"] = "\n".join(filter(None, [content, *written]))
    return turn


def _arguments(text: str, index: int) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise BadParameterError(f"messages[{index}].tool_calls: arguments are not JSON", "messages") from None


def _with_instructions(conversation: list[dict[str, Any]], tools: tuple[ChatTool, ...]) -> list[dict[str, Any]]:
    """The tools described in the system turn (appended to the caller's, or a new first turn)."""
    described = "\n".join(
        json.dumps(
            {
                "name": tool.function.name,
                "description": tool.function.description or "",
                "parameters": parameters_of(tool),
            }
        )
        for tool in tools
    )
    instructions = TOOL_INSTRUCTIONS.format(tools=described)
    if conversation and conversation[0]["role"] == "system":
        first = conversation[0]
        return [{**first, "content": f"{first['content']}\n\n{instructions}"}, *conversation[1:]]
    return [{"role": "system", "content": instructions}, *conversation]
