"""``POST /v1/messages``: Anthropic's Messages API over the same engine, one block per reply.

The block is text, or with tools (anthropic_tools.py) a ``tool_use`` call.
A stream is Anthropic's event sequence: ``message_start``,
``content_block_start``, ``ping``, ``content_block_delta``...,
``content_block_stop``, ``message_delta`` (stop reason, output tokens),
``message_stop``; a failure after the headers is an ``error`` event. With
tools a reply is held back while it may still become a call (as on the
chat route): a call then arrives as a ``tool_use`` block whose whole input
is one ``input_json_delta``; text streams as soon as it cannot be a call.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Sequence

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from sagellm.engines.server.anthropic_tools import chat_view, reply_blocks, uses_tools
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
    InputJsonDelta,
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
    ToolUseBlock,
)
from sagellm.engines.server.request_handle import RequestHandle
from sagellm.engines.server.sampling import anthropic_sampling, chat_sampling
from sagellm.engines.server.sse import EventStreamResponse, event_frame
from sagellm.engines.server.state import ServerState, get_state
from sagellm.engines.server.structured_output import require_grammar_engine
from sagellm.engines.server.tool_calls import ToolUse, may_become_call, read_reply, tool_use
from sagellm.engines.server.tool_prompt import encode_chat_request
from sagellm.engines.tokenizer import Tokenizer

router = APIRouter()


@router.post("/v1/messages", response_model=None)
async def create_message(body: MessagesRequest, request: Request) -> Response:
    state = get_state(request)
    state.metrics.count_api_request("messages")
    model = state.resolve_model(body.model)
    message_id = f"msg_{uuid.uuid4().hex}"
    use: ToolUse | None = None
    if uses_tools(body):
        chat = chat_view(body)
        use = tool_use(chat)
        prompt = encode_chat_request(state.tokenizer, chat, use)
        sampling = chat_sampling(chat, len(prompt), state.max_model_len, state.options.sampling_defaults)
        require_grammar_engine(state.engine.engine, sampling)
    else:
        prompt = encode_anthropic_messages(state.tokenizer, body)
        sampling = anthropic_sampling(body, state.options.sampling_defaults)
    handle = await state.engine.submit([prompt], [sampling], [message_id])
    stops = body.stop_sequences or []
    if body.stream:
        return EventStreamResponse(handle, _stream(state, handle, message_id, model, stops, use))
    try:
        result = (await cancel_on_disconnect(request, collect(handle)))[0]
    finally:
        handle.abort()
    stop_reason, stop_sequence = _stop_reason(state.tokenizer, result, stops)
    blocks, tool_stop = reply_blocks(read_reply(result.text, result.finish_reason, use))
    message = Message(
        id=message_id,
        model=model,
        content=blocks,
        stop_reason=tool_stop or stop_reason,
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
    state: ServerState,
    handle: RequestHandle,
    message_id: str,
    model: str,
    stops: Sequence[str],
    use: ToolUse | None,
) -> AsyncIterator[str]:
    result = ChoiceResult()
    usage = AnthropicUsage(input_tokens=handle.num_prompt_tokens[0], output_tokens=0)
    start = Message(id=message_id, model=model, content=[], stop_reason=None, stop_sequence=None, usage=usage)
    held = use is not None  # the reply may still become a call: nothing of it is sent yet
    try:
        yield event_frame("message_start", MessageStartEvent(message=start))
        if not held:
            yield event_frame("content_block_start", ContentBlockStartEvent())
        yield event_frame("ping", PingEvent())
        async for _, output in handle.outputs():
            result.add(output)
            if held and use is not None and use.mode == "auto" and not may_become_call(result.text):
                held = False
                yield event_frame("content_block_start", ContentBlockStartEvent())
                output_text = result.text  # everything so far, held until now
            else:
                output_text = output.new_text
            if not held and output_text:
                yield event_frame("content_block_delta", ContentBlockDeltaEvent(delta=TextDelta(text=output_text)))
        stop_reason, stop_sequence = _stop_reason(state.tokenizer, result, stops)
        tool_stop = None
        if held:
            blocks, tool_stop = reply_blocks(read_reply(result.text, result.finish_reason, use))
            for frame in _whole_block(blocks[0]):
                yield frame
        yield event_frame("content_block_stop", ContentBlockStopEvent())
        delta = MessageDelta(stop_reason=tool_stop or stop_reason, stop_sequence=stop_sequence)
        yield event_frame(
            "message_delta", MessageDeltaEvent(delta=delta, usage=DeltaUsage(output_tokens=result.num_output_tokens))
        )
        yield event_frame("message_stop", MessageStopEvent())
    except Exception as exc:  # the status line is gone: report in-band
        yield anthropic_error_frame(exc)


def _whole_block(block: TextBlock | ToolUseBlock) -> list[str]:
    """A held reply's block start and its content as one delta (a call's input is one JSON delta)."""
    if isinstance(block, TextBlock):
        start = event_frame("content_block_start", ContentBlockStartEvent())
        return [start, *([] if not block.text else [_delta(TextDelta(text=block.text))])]
    opened = ToolUseBlock(id=block.id, name=block.name, input={})
    start = event_frame("content_block_start", ContentBlockStartEvent(content_block=opened))
    return [start, _delta(InputJsonDelta(partial_json=json.dumps(block.input)))]


def _delta(delta: TextDelta | InputJsonDelta) -> str:
    return event_frame("content_block_delta", ContentBlockDeltaEvent(delta=delta))
