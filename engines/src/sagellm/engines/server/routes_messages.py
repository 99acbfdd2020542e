"""``POST /v1/messages``: Anthropic's Messages API over the same engine, one text block per reply.

A stream is Anthropic's event sequence: ``message_start``,
``content_block_start``, ``ping``, ``content_block_delta``...,
``content_block_stop``, ``message_delta`` (stop reason, output tokens),
``message_stop``; a failure after the headers is an ``error`` event.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from sagellm.engines.server.choices import ChoiceResult, collect
from sagellm.engines.server.disconnect import cancel_on_disconnect
from sagellm.engines.server.error_handlers import anthropic_error_frame
from sagellm.engines.server.errors import ServiceUnavailableError
from sagellm.engines.server.prompts import encode_anthropic_messages
from sagellm.engines.server.protocol_anthropic import (
    AnthropicUsage,
    ContentBlockDeltaEvent,
    ContentBlockStartEvent,
    ContentBlockStopEvent,
    DeltaUsage,
    Message,
    MessageDelta,
    MessageDeltaEvent,
    MessagesRequest,
    MessageStartEvent,
    MessageStopEvent,
    PingEvent,
    StopReason,
    TextBlock,
    TextDelta,
)
from sagellm.engines.server.request_handle import RequestHandle
from sagellm.engines.server.sampling import anthropic_sampling
from sagellm.engines.server.sse import EventStreamResponse, event_frame
from sagellm.engines.server.state import ServerState, get_state
from sagellm.engines.tokenizer import Tokenizer

router = APIRouter()


@router.post("/v1/messages", response_model=None)
async def create_message(body: MessagesRequest, request: Request) -> Response:
    state = get_state(request)
    state.metrics.count_api_request("messages")
    model = state.resolve_model(body.model)
    message_id = f"msg_{uuid.uuid4().hex}"
    prompt = encode_anthropic_messages(state.tokenizer, body)
    handle = await state.engine.submit(
        [prompt], [anthropic_sampling(body, state.options.sampling_defaults)], [message_id]
    )
    stops = body.stop_sequences or []
    if body.stream:
        return EventStreamResponse(handle, _stream(state, handle, message_id, model, stops))
    try:
        result = (await cancel_on_disconnect(request, collect(handle)))[0]
    finally:
        handle.abort()
    stop_reason, stop_sequence = _stop_reason(state.tokenizer, result, stops)
    message = Message(
        id=message_id,
        model=model,
        content=[TextBlock(text=result.text)],
        stop_reason=stop_reason,
        stop_sequence=stop_sequence,
        usage=AnthropicUsage(input_tokens=len(prompt), output_tokens=result.num_output_tokens),
    )
    return JSONResponse(message.model_dump())


def _stop_reason(tokenizer: Tokenizer, result: ChoiceResult, stops: Sequence[str]) -> tuple[StopReason, str | None]:
    """Anthropic names the stop sequence that matched; the engine cut the text just before it."""
    if result.finish_reason == "abort":
        raise ServiceUnavailableError("the server shut down before the reply was complete")
    if result.finish_reason == "length":
        return "max_tokens", None
    if stops:
        rest = tokenizer.decode(result.token_ids)[len(result.text) :]
        found = [(rest.find(s), s) for s in stops if s in rest]
        if found:
            return "stop_sequence", min(found)[1]
    return "end_turn", None


async def _stream(
    state: ServerState, handle: RequestHandle, message_id: str, model: str, stops: Sequence[str]
) -> AsyncIterator[str]:
    result = ChoiceResult()
    usage = AnthropicUsage(input_tokens=handle.num_prompt_tokens[0], output_tokens=0)
    start = Message(id=message_id, model=model, content=[], stop_reason=None, stop_sequence=None, usage=usage)
    try:
        yield event_frame("message_start", MessageStartEvent(message=start))
        yield event_frame("content_block_start", ContentBlockStartEvent())
        yield event_frame("ping", PingEvent())
        async for _, output in handle.outputs():
            result.add(output)
            if output.new_text:
                yield event_frame("content_block_delta", ContentBlockDeltaEvent(delta=TextDelta(text=output.new_text)))
        stop_reason, stop_sequence = _stop_reason(state.tokenizer, result, stops)
        yield event_frame("content_block_stop", ContentBlockStopEvent())
        delta = MessageDelta(stop_reason=stop_reason, stop_sequence=stop_sequence)
        yield event_frame(
            "message_delta", MessageDeltaEvent(delta=delta, usage=DeltaUsage(output_tokens=result.num_output_tokens))
        )
        yield event_frame("message_stop", MessageStopEvent())
    except Exception as exc:  # the status line is gone: report in-band
        yield anthropic_error_frame(exc)
