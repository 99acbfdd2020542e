"""Reading an OpenAI-style completion stream: ``data:`` lines, chunks, usage.

Kept apart from the HTTP client so the parsing is testable on plain strings
and tolerant in one place of what real servers send: comments
(``: ping``), ``event:`` lines, an error object instead of a chunk, usage
in the last chunk only (``stream_options.include_usage``) or not at all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

DONE = "[DONE]"


@dataclass(frozen=True, slots=True)
class StreamChunk:
    text: str = ""
    finish_reason: str | None = None
    completion_tokens: int | None = None
    prompt_tokens: int | None = None
    cached_tokens: int | None = None
    error: str | None = None


def sse_data(line: str) -> str | None:
    """The payload of a ``data:`` line; None for anything else (blank, comment, ``event:``, ``id:``)."""
    if not line.startswith("data:"):
        return None
    return line[5:].strip()


def parse_chunk(payload: str) -> StreamChunk:
    try:
        chunk = json.loads(payload)
    except json.JSONDecodeError:
        return StreamChunk(error=f"unparsable stream chunk: {payload[:80]!r}")
    if not isinstance(chunk, dict):
        return StreamChunk(error=f"unexpected stream chunk: {payload[:80]!r}")
    if "error" in chunk:
        error = chunk["error"]
        return StreamChunk(error=str(error.get("message", error) if isinstance(error, dict) else error))
    choices = chunk.get("choices") or []
    first: dict[str, Any] = choices[0] if choices and isinstance(choices[0], dict) else {}
    usage = _mapping(chunk.get("usage"))
    details = _mapping(usage.get("prompt_tokens_details"))
    return StreamChunk(
        text=str(first.get("text") or ""),
        finish_reason=first.get("finish_reason"),
        completion_tokens=_int(usage.get("completion_tokens")),
        prompt_tokens=_int(usage.get("prompt_tokens")),
        cached_tokens=_int(details.get("cached_tokens")),
    )


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
