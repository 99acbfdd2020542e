"""``POST /v1/completions``: text in, text out; one engine request per prompt per choice.

Choice ``i`` of prompt ``p`` has index ``p * n + i``, as in OpenAI's API.
Everything that can fail (model name, parameters, prompt length, a full
queue) fails in ``submit`` before a byte is sent, so a stream never starts
with an error.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from sagellm.engines.engine.reasoning_output import ReasoningOutput
from sagellm.engines.server.choices import ChoiceResult, ResponseMeta, collect, usage_of
from sagellm.engines.server.cot_request import budget_prompt, reasoning_info, reasoning_options
from sagellm.engines.server.disconnect import cancel_on_disconnect
from sagellm.engines.server.error_handlers import openai_error_frame
from sagellm.engines.server.logprobs import completion_logprobs
from sagellm.engines.server.prompts import encode_completion_prompts
from sagellm.engines.server.protocol_openai import CompletionChoice, CompletionRequest, CompletionResponse, Usage
from sagellm.engines.server.request_handle import RequestHandle
from sagellm.engines.server.sampling import completion_sampling, seeded_copies
from sagellm.engines.server.sse import DONE, EventStreamResponse, data_frame
from sagellm.engines.server.state import ServerState, get_state
from sagellm.engines.server.structured_output import require_grammar_engine
from sagellm.engines.server.text_frames import TextFrames

router = APIRouter()


@router.post("/v1/completions", response_model=None)
async def create_completion(body: CompletionRequest, request: Request) -> Response:
    state = get_state(request)
    state.metrics.count_api_request("completions")
    meta = ResponseMeta(f"cmpl-{uuid.uuid4().hex}", int(time.time()), state.resolve_model(body.model))
    sampling = seeded_copies(completion_sampling(body, state.options.sampling_defaults), body.n)
    reasoning = reasoning_options(body, state.engine.engine)
    require_grammar_engine(state.engine.engine, sampling[0], reasoning)
    prompts = encode_completion_prompts(state.tokenizer, budget_prompt(body.prompt, reasoning, state.engine.engine))
    engine_prompts = [ids for ids in prompts for _ in range(body.n)]
    request_ids = [f"{meta.id}-{i}" for i in range(len(engine_prompts))]
    handle = await state.engine.submit(engine_prompts, sampling * len(prompts), request_ids, reasoning)
    echoes = [state.tokenizer.decode(ids) for ids in engine_prompts] if body.echo else None
    if body.stream:
        include_usage = body.stream_options is not None and body.stream_options.include_usage
        stream = _stream(state, handle, meta, body.n, echoes, body.logprobs is not None, include_usage)
        return EventStreamResponse(handle, stream)
    try:
        results = await cancel_on_disconnect(request, collect(handle))
    finally:
        handle.abort()
    return JSONResponse(_response(state, handle, meta, body.n, results, echoes).model_dump())


def _response(
    state: ServerState,
    handle: RequestHandle,
    meta: ResponseMeta,
    n: int,
    results: list[ChoiceResult],
    echoes: list[str] | None,
) -> CompletionResponse:
    choices = []
    for index, result in enumerate(results):
        echo = echoes[index] if echoes else ""
        logprobs = None
        if result.logprobs:
            logprobs = completion_logprobs(state.tokenizer, result.token_ids, result.logprobs, result.top_logprobs)
        choices.append(
            CompletionChoice(
                index=index,
                text=echo + result.text,
                logprobs=logprobs,
                finish_reason=result.finish_reason,
                reasoning=reasoning_info(result.reasoning),
            )
        )
    return CompletionResponse(
        id=meta.id, created=meta.created, model=meta.model, choices=choices, usage=usage_of(handle, n, results)
    )


async def _stream(
    state: ServerState,
    handle: RequestHandle,
    meta: ResponseMeta,
    n: int,
    echoes: list[str] | None,
    want_logprobs: bool,
    include_usage: bool,
) -> AsyncIterator[str]:
    results = [ChoiceResult() for _ in range(handle.num_choices)]
    offsets = [len(e) for e in echoes] if echoes else [0] * handle.num_choices

    def chunk(choices: list[CompletionChoice], usage: Usage | None = None) -> str:
        return data_frame(
            CompletionResponse(id=meta.id, created=meta.created, model=meta.model, choices=choices, usage=usage)
        )

    text_frames = TextFrames(
        lambda index, text: chunk([CompletionChoice(index=index, text=text, logprobs=None, finish_reason=None)])
    )
    try:
        for index, echo in enumerate(echoes or ()):
            yield chunk([CompletionChoice(index=index, text=echo, logprobs=None, finish_reason=None)])
        async for index, output in handle.outputs():
            results[index].add(output)
            if not (output.new_text or output.finished or want_logprobs):
                continue  # text held back (a stop string may be starting): nothing to send yet
            if not (want_logprobs or output.finished):
                offsets[index] += len(output.new_text)
                yield text_frames.frame(index, output.new_text)  # the per-token frame, from its template
                continue
            logprobs = None
            if want_logprobs and output.logprobs:
                logprobs = completion_logprobs(
                    state.tokenizer, output.new_token_ids, output.logprobs, output.top_logprobs or (), offsets[index]
                )
            offsets[index] += len(output.new_text)
            report = output.reasoning if isinstance(output, ReasoningOutput) else None
            choice = CompletionChoice(
                index=index,
                text=output.new_text,
                logprobs=logprobs,
                finish_reason=output.finish_reason,
                reasoning=reasoning_info(report),
            )
            yield chunk([choice])
        if include_usage:
            yield chunk([], usage_of(handle, n, results))
    except Exception as exc:  # the status line is gone: report in-band
        yield openai_error_frame(exc)
    yield DONE
