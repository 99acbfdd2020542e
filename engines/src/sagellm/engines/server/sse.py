"""Server-sent events: the frame format, and a response that frees its requests however it ends.

A stream can end four ways: every choice finished, the client disconnected
(Starlette cancels the body), the body raised, or the server was stopped.
``EventStreamResponse`` aborts the handle in a ``finally`` around all of
them; for a finished handle that is a no-op, otherwise it frees the KV.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from pydantic import BaseModel
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from sagellm.engines.server.request_handle import RequestHandle

DONE = "data: [DONE]\n\n"


def data_frame(payload: BaseModel) -> str:
    """OpenAI style: data lines only."""
    return f"data: {payload.model_dump_json()}\n\n"


def event_frame(event: str, payload: BaseModel) -> str:
    """Anthropic style: a named event, whose name repeats the payload's ``type``."""
    return f"event: {event}\ndata: {payload.model_dump_json()}\n\n"


class EventStreamResponse(StreamingResponse):
    def __init__(self, handle: RequestHandle, body: AsyncIterator[str]) -> None:
        super().__init__(body, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        self.handle = handle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.handle.abort()
