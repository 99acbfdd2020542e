"""The templated per-token frame says exactly what the pydantic model would."""

from __future__ import annotations

import json

import pytest

from sagellm.engines.server.protocol_openai import CompletionChoice, CompletionResponse
from sagellm.engines.server.sse import data_frame
from sagellm.engines.server.text_frames import TextFrames


def render(index: int, text: str) -> str:
    choice = CompletionChoice(index=index, text=text, logprobs=None, finish_reason=None)
    return data_frame(CompletionResponse(id="cmpl-1", created=7, model='m"odel', choices=[choice]))


@pytest.mark.parametrize("text", ["", " the", 'say "hi"\n', "back\\slash\ttab", "é中🙂", "\x00\x1f\u2028"])
@pytest.mark.parametrize("index", [0, 3])
def test_frame_matches_the_model_dump(text: str, index: int) -> None:
    frame = TextFrames(render).frame(index, text)
    expected = render(index, text)
    assert frame.startswith("data: ") and frame.endswith("\n\n")
    assert json.loads(frame[6:]) == json.loads(expected[6:])
    if text.isprintable():
        assert frame == expected


def test_a_renderer_that_drops_the_text_is_refused() -> None:
    with pytest.raises(ValueError, match="placeholder"):
        TextFrames(lambda index, text: render(index, "constant")).frame(0, "x")
