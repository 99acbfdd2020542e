"""The async side of one API request: its engine requests and the queue their outputs arrive on.

An API request with ``n`` choices (or a list of prompts) is several engine
requests; their outputs share one queue, tagged with the choice index, so a
handler reads a single stream whatever ``n`` is. The engine thread puts
``(index, StepOutput)`` items, or one exception when the engine failed.

A handler that fell behind the engine (the event loop shares two cores with
the engine's threads) gets what queued up for a choice merged into one
output, as vLLM's output collector does: one SSE frame for several tokens
instead of one each, so the HTTP thread's per-frame work stops growing with
the backlog. Served at 16 users, 128 tokens each, the HTTP thread spent
~0.3 ms of CPU per frame on two cores that the engine also needs.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TypeVar

from sagellm.core.types import StepOutput

Item = tuple[int, StepOutput] | BaseException
T = TypeVar("T")


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
        """Every output of every choice, in arrival order, until all have finished; outputs of one
        choice that queued up while the handler was busy arrive merged."""
        while self._unfinished:
            items = [await self.queue.get()]
            while not self.queue.empty():
                items.append(self.queue.get_nowait())
            for item in coalesced(items):
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


def coalesced(items: Sequence[Item]) -> list[Item]:
    """``items`` with each run of outputs of one choice merged into one (order kept)."""
    merged: list[Item] = []
    for item in items:
        last = merged[-1] if merged else None
        if isinstance(item, tuple) and isinstance(last, tuple) and last[0] == item[0] and not last[1].finished:
            merged[-1] = (item[0], followed_by(last[1], item[1]))
        else:
            merged.append(item)
    return merged


def followed_by(first: StepOutput, then: StepOutput) -> StepOutput:
    """One output carrying ``first``'s tokens and then ``then``'s; counters and the finish are the later's."""
    return dataclasses.replace(
        then,
        new_token_ids=first.new_token_ids + then.new_token_ids,
        new_text=first.new_text + then.new_text,
        logprobs=_joined(first.logprobs, then.logprobs),
        top_logprobs=_joined(first.top_logprobs, then.top_logprobs),
    )


def _joined(first: tuple[T, ...] | None, then: tuple[T, ...] | None) -> tuple[T, ...] | None:
    if first is None and then is None:
        return None
    return (first or ()) + (then or ())
