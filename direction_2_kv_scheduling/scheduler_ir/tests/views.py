"""Small SequenceView builders for the policy tests (block size 4)."""

from __future__ import annotations

import math

from sagellm.core.types import SequenceView

BS = 4


def run(
    rid: str,
    tokens: int = 9,
    computed: int | None = None,
    arrival: float = 0.0,
    prompt: int = 8,
    priority: int = 0,
    last: float | None = None,
) -> SequenceView:
    """A running sequence; by default a decode (one uncomputed token past the prompt)."""
    done = tokens - 1 if computed is None else computed
    return SequenceView(
        rid,
        tokens,
        done,
        math.ceil(done / BS),
        arrival_time=arrival,
        priority=priority,
        num_prompt_tokens=prompt,
        last_token_time=last,
    )


def wait(rid: str, prompt: int = 4, arrival: float = 0.0, cached: int = 0, priority: int = 0) -> SequenceView:
    return SequenceView(
        rid,
        prompt,
        0,
        0,
        arrival_time=arrival,
        priority=priority,
        num_cached_tokens=cached,
        num_prompt_tokens=prompt,
    )


def ids(views: object) -> list[str]:
    return [v.request_id for v in views]  # type: ignore[attr-defined]
