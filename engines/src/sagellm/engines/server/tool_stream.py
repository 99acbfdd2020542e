"""A streamed chat reply that may be a tool call: text flows as it comes, a call arrives whole.

A call is known only once its JSON is complete, so a reply is held back
while it may still become one: always with a forced call (``required`` or
a named tool), and under ``auto`` while its text is a prefix of a call
(``{``, ``<tool_call>``, a fence). Once an ``auto`` reply cannot be a call
it streams like any other. At the end a held reply is sent as one
``tool_calls`` delta (id, name and the whole arguments) or as one content
delta, then the chunk with the finish reason (``tool_calls`` for a call).
Clients (the ``openai`` SDK's accumulators too) take a call in one delta.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from sagellm.engines.server.choices import ChoiceResult, ResponseMeta, usage_of
from sagellm.engines.server.error_handlers import openai_error_frame
from sagellm.engines.server.logprobs import chat_logprobs
from sagellm.engines.server.protocol_openai import (
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatDelta,
    ChatLogprobs,
    ToolCallDelta,
    Usage,
)
from sagellm.engines.server.request_handle import RequestHandle
from sagellm.engines.server.sse import DONE, data_frame
from sagellm.engines.server.state import ServerState
from sagellm.engines.server.tool_calls import ToolUse, may_become_call, read_reply


async def stream_tool_replies(
    state: ServerState,
    handle: RequestHandle,
    meta: ResponseMeta,
    use: ToolUse,
    want_logprobs: bool,
    include_usage: bool,
) -> AsyncIterator[str]:
    results = [ChoiceResult() for _ in range(handle.num_choices)]
    held = [True] * handle.num_choices  # the reply may still be a call
    sent_chars = [0] * handle.num_choices
    sent_tokens = [0] * handle.num_choices

    def chunk(choices: list[ChatChunkChoice], usage: Usage | None = None) -> str:
        return data_frame(
            ChatCompletionChunk(id=meta.id, created=meta.created, model=meta.model, choices=choices, usage=usage)
        )

    def logprobs_since(index: int) -> ChatLogprobs | None:
        result, start = results[index], sent_tokens[index]
        sent_tokens[index] = len(result.token_ids)
        if not want_logprobs or not result.logprobs[start:]:
            return None
        top = result.top_logprobs[start:] if result.top_logprobs else ()
        return chat_logprobs(state.tokenizer, result.token_ids[start:], result.logprobs[start:], top)

    def delta(index: int, content: str | None = None, calls: list[ToolCallDelta] | None = None) -> str:
        body = ChatDelta(content=content, tool_calls=calls)
        return chunk([ChatChunkChoice(index=index, delta=body, logprobs=logprobs_since(index), finish_reason=None)])

    try:
        for index in range(handle.num_choices):
            role = ChatDelta(role="assistant", content="")
            yield chunk([ChatChunkChoice(index=index, delta=role, logprobs=None, finish_reason=None)])
        async for index, output in handle.outputs():
            result = results[index]
            result.add(output)
            if held[index] and use.mode == "auto" and not may_become_call(result.text):
                held[index] = False
            if not held[index] and len(result.text) > sent_chars[index]:
                yield delta(index, content=result.text[sent_chars[index] :])
                sent_chars[index] = len(result.text)
            if not output.finished:
                continue
            finish_reason = output.finish_reason
            if held[index]:
                reply = read_reply(result.text, output.finish_reason, use)
                finish_reason = reply.finish_reason
                if reply.tool_calls:
                    calls = [
                        ToolCallDelta(index=i, id=call.id, function=call.function)
                        for i, call in enumerate(reply.tool_calls)
                    ]
                    yield delta(index, calls=calls)
                elif reply.content:
                    yield delta(index, content=reply.content)
            end = ChatChunkChoice(index=index, delta=ChatDelta(), logprobs=None, finish_reason=finish_reason)
            yield chunk([end])
        if include_usage:
            yield chunk([], usage_of(handle, len(results), results))
    except Exception as exc:  # the status line is gone: report in-band
        yield openai_error_frame(exc)
    yield DONE
