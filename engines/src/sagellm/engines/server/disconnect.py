"""Cancel a handler's work when its client disconnects, so the engine stops generating for nobody.

Starlette already cancels a *streaming* response when the client goes away;
a non-streaming handler would otherwise run to ``max_tokens`` holding KV
blocks. Cancelling the work raises CancelledError inside it, and the
handler's ``finally: handle.abort()`` frees the engine requests at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from fastapi import Request

from sagellm.engines.server.errors import ClientDisconnectedError

T = TypeVar("T")


async def cancel_on_disconnect(request: Request, work: Coroutine[Any, Any, T]) -> T:
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_for_disconnect(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        raise ClientDisconnectedError("the client disconnected")
    finally:
        for pending in (task, watcher):
            pending.cancel()
        await asyncio.gather(task, watcher, return_exceptions=True)  # let the work's cleanup run now


async def _wait_for_disconnect(request: Request) -> None:
    """The body has been read, so the next ASGI message can only be the disconnect."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
