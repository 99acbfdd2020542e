"""``/tokenize``, ``/detokenize`` and ``/version`` (vLLM's shapes), for clients that count or check tokens.

A prompt is tokenized exactly as the completion and chat routes do it
(same chat template), so a count here is the count a request would have.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import Field

from sagellm.engines.server.errors import BadParameterError
from sagellm.engines.server.prompts import encode_openai_chat
from sagellm.engines.server.protocol_openai import ChatMessage, TopLevelRequest
from sagellm.engines.server.state import get_state
from sagellm.engines.version import __version__

router = APIRouter()


class TokenizeRequest(TopLevelRequest):
    model: str | None = None
    prompt: str | None = None
    messages: list[ChatMessage] | None = Field(default=None, min_length=1)
    add_special_tokens: bool = True


class DetokenizeRequest(TopLevelRequest):
    model: str | None = None
    tokens: list[int]


@router.post("/tokenize")
async def tokenize(body: TokenizeRequest, request: Request) -> JSONResponse:
    state = get_state(request)
    state.resolve_model(body.model)
    if (body.prompt is None) == (body.messages is None):
        raise BadParameterError("give exactly one of prompt and messages", "prompt")
    if body.messages is not None:
        tokens = encode_openai_chat(state.tokenizer, body.messages)
    else:
        tokens = state.tokenizer.encode(body.prompt or "", add_special_tokens=body.add_special_tokens)
    return JSONResponse({"count": len(tokens), "max_model_len": state.max_model_len, "tokens": tokens})


@router.post("/detokenize")
async def detokenize(body: DetokenizeRequest, request: Request) -> JSONResponse:
    state = get_state(request)
    state.resolve_model(body.model)
    vocab = state.tokenizer.vocab_size
    bad = [t for t in body.tokens if not 0 <= t < vocab]
    if bad:
        raise BadParameterError(f"token ids must be in [0, {vocab}); got {bad[:3]}", "tokens")
    return JSONResponse({"prompt": state.tokenizer.decode(body.tokens, skip_special_tokens=False)})


@router.get("/version")
async def version() -> JSONResponse:
    return JSONResponse({"version": __version__})
