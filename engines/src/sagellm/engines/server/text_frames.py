"""The stream's most frequent frame (one choice, new text, nothing else) written from a template.

A stream sends one such frame per token. Built as a pydantic model and
dumped, each cost ~25 us of the HTTP thread's CPU, which on a 2-core machine
is taken from the engine's compute threads. The template is that same dump,
rendered once per (stream, choice index) with a placeholder text, so the
frame is byte for byte what the model would give; only the text is encoded
per token. Anything less common (logprobs, finish reasons, usage) still goes
through the models.
"""

from __future__ import annotations

import json
from collections.abc import Callable

PLACEHOLDER = "\ufffcsagellm-text\ufffc"  # object replacement characters: never produced by escaping
ENCODED_PLACEHOLDER = json.dumps(PLACEHOLDER, ensure_ascii=False)


class TextFrames:
    """``frame(index, text)``: the SSE frame ``render(index, PLACEHOLDER)`` gives, with ``text`` in its place."""

    def __init__(self, render: Callable[[int, str], str]) -> None:
        self._render = render
        self._parts: dict[int, tuple[str, str]] = {}

    def frame(self, index: int, text: str) -> str:
        parts = self._parts.get(index)
        if parts is None:
            before, found, after = self._render(index, PLACEHOLDER).partition(ENCODED_PLACEHOLDER)
            if not found:
                raise ValueError("the rendered frame does not hold the placeholder text exactly once")
            parts = self._parts[index] = (before, after)
        return parts[0] + json.dumps(text, ensure_ascii=False) + parts[1]
