"""The async side of one API request: its engine requests and the queue their outputs arrive on.

An API request with ``n`` choices (or a list of prompts) is several engine
requests; their outputs share one queue, tagged with the choice index, so a
handler reads a single stream whatever ``n`` is. The engine thread puts
``(index, StepOutput)`` items, or one exception when the engine failed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence

from sagellm.core.types import StepOutput

Item = tuple[int, StepOutput] | BaseException


class RequestHandle:
    """Outputs of ``len(request_ids)`` engine requests; ``abort()`` frees what is still running.

    Handlers call ``abort()`` in a ``finally``: it is a no-op once every
    choice finished, and otherwise frees the KV of a client that went away.
    """

    def __init__(
        self,
        request_ids: Sequence[str],
        num_prompt_tokens: Sequence[int],
        abort: Callable[[list[str]], None],
    ) -> None:
        self.request_ids = list(request_ids)
        self.num_prompt_tokens = list(num_prompt_tokens)
        self.queue: asyncio.Queue[Item] = asyncio.Queue()
        self._unfinished = set(range(len(self.request_ids)))
        self._abort = abort

    @property
    def num_choices(self) -> int:
        return len(self.request_ids)

    @property
    def finished(self) -> bool:
        return not self._unfinished

    async def outputs(self) -> AsyncIterator[tuple[int, StepOutput]]:
        """Every output of every choice, in arrival order, until all have finished."""
        while self._unfinished:
            item = await self.queue.get()
            if isinstance(item, BaseException):
                self._unfinished.clear()  # the engine thread already dropped these requests
                raise item
            index, output = item
            if output.finished:
                self._unfinished.discard(index)
            yield index, output

    def abort(self) -> None:
        if self._unfinished:
            self._abort([self.request_ids[i] for i in sorted(self._unfinished)])
            self._unfinished.clear()
