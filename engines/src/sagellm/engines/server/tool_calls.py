"""Tool calling on /v1/chat/completions: which tools the model may call, and the calls read back from its reply.

The model writes a call as one JSON object, ``{"name": <tool>, "arguments":
{...}}`` (the shape Hermes-, Qwen- and SmolLM-style tool prompts ask for).
What ``tool_choice`` does with it:

* ``"required"``, or a named function: the reply is constrained by a
  grammar to such an object, its name one of the allowed tools and its
  arguments matching that tool's ``parameters`` schema; it is always a call.
* ``"auto"`` (the default when tools are given): the model answers freely,
  and a reply that is exactly such an object naming a given tool (bare, in
  ``<tool_call>`` tags or a ```` ```json ```` fence; ``parameters`` is read
  as ``arguments``, as Llama 3.1 writes it) becomes a call; anything else
  is content. A grammar for "text or a call" would have to know each
  model's own call syntax, and constraining the call alone keeps free
  answers free. The arguments of an "auto" call are checked to be a JSON
  object, not validated against the schema.
* ``"none"``: the tools are not shown; the reply is text.

A reply holds at most one call, which satisfies ``parallel_tool_calls``
either way. The response then carries ``message.tool_calls`` (``content``
null) and ``finish_reason: "tool_calls"``, as OpenAI's API does.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from sagellm.engines.server.errors import BadParameterError
from sagellm.engines.server.protocol_openai import ChatCompletionRequest, ChatTool, FunctionCall, ToolCall

NO_ARGUMENTS: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": False}
_WRAPPED = re.compile(r"^(?:<tool_call>(?P<tagged>.*)</tool_call>|```(?:json)?(?P<fenced>.*)```)$", re.DOTALL)


@dataclass(frozen=True, slots=True)
class ToolUse:
    """The tools a reply may call: ``required`` forces a call (grammar), ``auto`` lets the model choose."""

    mode: Literal["auto", "required"]
    tools: tuple[ChatTool, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(tool.function.name for tool in self.tools)


def tool_use(request: ChatCompletionRequest) -> ToolUse | None:
    """What ``tools`` and ``tool_choice`` ask for; None when the reply is plain text (no tools, or "none")."""
    tools = tuple(request.tools or ())
    choice = request.tool_choice
    if not tools:
        if choice not in (None, "none"):
            raise BadParameterError("tool_choice needs tools", "tool_choice")
        return None
    names = [tool.function.name for tool in tools]
    if len(set(names)) != len(names):
        raise BadParameterError("tool names must be unique", "tools")
    if choice == "none":
        return None
    if choice is None or choice == "auto":
        return ToolUse("auto", tools)
    if choice == "required":
        return ToolUse("required", tools)
    named = [tool for tool in tools if tool.function.name == choice.function.name]
    if not named:
        raise BadParameterError(f"tool_choice names {choice.function.name!r}, which is not in tools", "tool_choice")
    return ToolUse("required", (named[0],))


def parameters_of(tool: ChatTool) -> dict[str, Any]:
    return tool.function.parameters if tool.function.parameters is not None else NO_ARGUMENTS


def call_schema(use: ToolUse) -> dict[str, Any]:
    """JSON schema of one call to one of ``use``'s tools: what a forced reply is constrained to."""
    calls = [
        {
            "type": "object",
            "properties": {"name": {"const": tool.function.name}, "arguments": parameters_of(tool)},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for tool in use.tools
    ]
    return calls[0] if len(calls) == 1 else {"anyOf": calls}


def parse_call(text: str, use: ToolUse) -> tuple[str, dict[str, Any]] | None:
    """(name, arguments) if ``text`` is one call to one of ``use``'s tools, else None."""
    body = text.strip()
    wrapped = _WRAPPED.match(body)
    if wrapped is not None:
        body = (wrapped.group("tagged") or wrapped.group("fenced") or "").strip()
    try:
        call = json.loads(body)
    except json.JSONDecodeError:
        return None
    if not isinstance(call, dict) or call.get("name") not in use.names:
        return None
    arguments = call.get("arguments", call.get("parameters", {}))
    if not isinstance(arguments, dict) or set(call) - {"name", "arguments", "parameters"}:
        return None
    return call["name"], arguments


def new_call(name: str, arguments: dict[str, Any]) -> ToolCall:
    return ToolCall(
        id=f"call_{uuid.uuid4().hex[:24]}", function=FunctionCall(name=name, arguments=json.dumps(arguments))
    )


@dataclass(frozen=True, slots=True)
class Reply:
    """One choice's message: text, or a tool call, and the finish reason to report."""

    content: str | None
    tool_calls: list[ToolCall] | None
    finish_reason: str | None


def read_reply(text: str, finish_reason: str | None, use: ToolUse | None) -> Reply:
    """``text`` as a tool call where it is one (and generation ended on its own), else as content."""
    if use is None or finish_reason != "stop":
        return Reply(text, None, finish_reason)  # a call cut short by max_tokens is returned as the text it is
    call = parse_call(text, use)
    if call is None:
        return Reply(text, None, finish_reason)
    return Reply(None, [new_call(*call)], "tool_calls")


def may_become_call(text: str) -> bool:
    """Whether a reply starting with ``text`` may still turn out to be a call (streaming holds it back until sure)."""
    head = text.lstrip()
    return any(head.startswith(opener) or opener.startswith(head) for opener in ("{", "<tool_call>", "```"))
