"""A handler that fell behind gets a choice's queued outputs merged, with nothing lost or reordered."""

from __future__ import annotations

import asyncio

import pytest

from sagellm.core.types import StepOutput
from sagellm.engines.server.request_handle import RequestHandle, coalesced


def out(token: int, finish: str | None = None, logprob: float | None = None) -> StepOutput:
    return StepOutput(
        "r",
        (token,),
        new_text=f"<{token}>",
        finish_reason=finish,
        num_output_tokens=token,
        logprobs=None if logprob is None else (logprob,),
    )


def test_runs_of_one_choice_merge_in_order() -> None:
    merged = coalesced([(0, out(1, logprob=-1.0)), (0, out(2, logprob=-2.0)), (1, out(3)), (0, out(4, "stop"))])
    assert [index for index, _ in merged] == [0, 1, 0]  # type: ignore[misc]
    first = merged[0]
    assert isinstance(first, tuple)
    assert first[1].new_token_ids == (1, 2) and first[1].new_text == "<1><2>"
    assert first[1].logprobs == (-1.0, -2.0) and first[1].num_output_tokens == 2


def test_a_finished_output_and_an_error_are_never_merged_away() -> None:
    error = RuntimeError("engine failed")
    merged = coalesced([(0, out(1, "stop")), (0, out(2)), error, (0, out(3))])
    assert len(merged) == 4 and merged[2] is error


def test_a_handler_behind_the_engine_reads_one_merged_output() -> None:
    async def read() -> list[StepOutput]:
        handle = RequestHandle(["r"], [3], abort=lambda ids: None)
        for item in (out(1), out(2), out(3, "length")):
            handle.queue.put_nowait((0, item))
        return [output async for _, output in handle.outputs()]

    outputs = asyncio.run(read())
    assert len(outputs) == 1
    assert outputs[0].new_token_ids == (1, 2, 3) and outputs[0].finish_reason == "length"


def test_an_engine_error_still_reaches_the_handler() -> None:
    async def read() -> None:
        handle = RequestHandle(["r"], [3], abort=lambda ids: None)
        handle.queue.put_nowait((0, out(1)))
        handle.queue.put_nowait(RuntimeError("engine failed"))
        async for _ in handle.outputs():
            pass

    with pytest.raises(RuntimeError, match="engine failed"):
        asyncio.run(read())
