"""``POST /v1/chat/completions``: a conversation through the model's chat template; n replies.

A stream sends, per choice, a first chunk with the assistant role, then the
content deltas, then a chunk with the finish reason; with
``stream_options.include_usage`` a last chunk with no choices carries the
usage; ``data: [DONE]`` ends it, as OpenAI's API does. A reply that may be
a tool call streams through :mod:`~sagellm.engines.server.tool_stream`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from sagellm.engines.engine.reasoning_output import ReasoningOutput
from sagellm.engines.server.choices import ChoiceResult, ResponseMeta, collect, usage_of
from sagellm.engines.server.cot_request import budget_messages, reasoning_info, reasoning_options
from sagellm.engines.server.disconnect import cancel_on_disconnect
from sagellm.engines.server.error_handlers import openai_error_frame
from sagellm.engines.server.logprobs import chat_logprobs
from sagellm.engines.server.protocol_openai import (
    ChatChoice,
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatDelta,
    ChatResponseMessage,
    Usage,
)
from sagellm.engines.server.request_handle import RequestHandle
from sagellm.engines.server.sampling import chat_sampling, seeded_copies
from sagellm.engines.server.sse import DONE, EventStreamResponse, data_frame
from sagellm.engines.server.state import ServerState, get_state
from sagellm.engines.server.structured_output import require_grammar_engine
from sagellm.engines.server.text_frames import TextFrames
from sagellm.engines.server.tool_calls import read_reply, tool_use
from sagellm.engines.server.tool_prompt import encode_chat_request
from sagellm.engines.server.tool_stream import stream_tool_replies

router = APIRouter()


@router.post("/v1/chat/completions", response_model=None)
async def create_chat_completion(body: ChatCompletionRequest, request: Request) -> Response:
    state = get_state(request)
    state.metrics.count_api_request("chat")
    meta = ResponseMeta(f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), state.resolve_model(body.model))
    reasoning = reasoning_options(body, state.engine.engine)  # a ``cot`` request's (None: a plain one)
    if reasoning is not None:
        body = body.model_copy(update={"messages": budget_messages(body.messages, reasoning, state.engine.engine)})
    use = tool_use(body)  # None: a plain-text reply
    prompt = encode_chat_request(state.tokenizer, body, use)
    sampling = seeded_copies(
        chat_sampling(body, len(prompt), state.max_model_len, state.options.sampling_defaults), body.n
    )
    require_grammar_engine(state.engine.engine, sampling[0], reasoning)
    request_ids = [f"{meta.id}-{i}" for i in range(body.n)]
    handle = await state.engine.submit([prompt] * body.n, sampling, request_ids, reasoning)
    if body.stream:
        include_usage = body.stream_options is not None and body.stream_options.include_usage
        if use is not None:
            tool_stream = stream_tool_replies(state, handle, meta, use, body.logprobs, include_usage)
            return EventStreamResponse(handle, tool_stream)
        return EventStreamResponse(handle, _stream(state, handle, meta, body.logprobs, include_usage))
    try:
        results = await cancel_on_disconnect(request, collect(handle))
    finally:
        handle.abort()
    replies = [read_reply(result.text, result.finish_reason, use) for result in results]
    choices = [
        ChatChoice(
            index=index,
            message=ChatResponseMessage(content=reply.content, tool_calls=reply.tool_calls),
            logprobs=chat_logprobs(state.tokenizer, result.token_ids, result.logprobs, result.top_logprobs)
            if body.logprobs
            else None,
            finish_reason=reply.finish_reason,
            reasoning=reasoning_info(result.reasoning),
        )
        for index, (result, reply) in enumerate(zip(results, replies))
    ]
    response = ChatCompletionResponse(
        id=meta.id,
        created=meta.created,
        model=meta.model,
        choices=choices,
        usage=usage_of(handle, len(results), results),
    )
    return JSONResponse(response.model_dump())


async def _stream(
    state: ServerState, handle: RequestHandle, meta: ResponseMeta, want_logprobs: bool, include_usage: bool
) -> AsyncIterator[str]:
    results = [ChoiceResult() for _ in range(handle.num_choices)]

    def chunk(choices: list[ChatChunkChoice], usage: Usage | None = None) -> str:
        return data_frame(
            ChatCompletionChunk(id=meta.id, created=meta.created, model=meta.model, choices=choices, usage=usage)
        )

    text_frames = TextFrames(
        lambda index, text: chunk(
            [ChatChunkChoice(index=index, delta=ChatDelta(content=text), logprobs=None, finish_reason=None)]
        )
    )
    try:
        for index in range(handle.num_choices):
            role = ChatDelta(role="assistant", content="")
            yield chunk([ChatChunkChoice(index=index, delta=role, logprobs=None, finish_reason=None)])
        async for index, output in handle.outputs():
            results[index].add(output)
            if not (want_logprobs or output.finished):
                if output.new_text:
                    yield text_frames.frame(index, output.new_text)  # the per-token frame, from its template
                continue
            logprobs = None
            if want_logprobs and output.logprobs:
                logprobs = chat_logprobs(
                    state.tokenizer, output.new_token_ids, output.logprobs, output.top_logprobs or ()
                )
            if output.new_text or logprobs is not None:
                delta = ChatDelta(content=output.new_text)
                yield chunk([ChatChunkChoice(index=index, delta=delta, logprobs=logprobs, finish_reason=None)])
            if output.finished:
                report = reasoning_info(output.reasoning if isinstance(output, ReasoningOutput) else None)
                end = ChatChunkChoice(
                    index=index, delta=ChatDelta(), logprobs=None, finish_reason=output.finish_reason, reasoning=report
                )
                yield chunk([end])
        if include_usage:
            yield chunk([], usage_of(handle, len(results), results))
    except Exception as exc:  # the status line is gone: report in-band
        yield openai_error_frame(exc)
    yield DONE
