"""One benchmark request, before it is sent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Message = dict[str, Any]  # an OpenAI-style chat message: {"role": ..., "content": ...}


@dataclass(frozen=True, slots=True)
class BenchRequest:
    """What a workload asks for; the dispatcher decides when it goes out.

    A request carries either ``prompt_token_ids`` (exact lengths: synthetic,
    traces, the Q1-Q8 suite) or ``messages`` (real chat, rendered with the
    model's template when sent). A later turn of a conversation names the
    turn it ``follows``: it is only sent once that turn has finished, and its
    prompt is the earlier turn's messages, the model's actual answer, then
    ``messages`` -- so it shares the earlier prompt as a prefix, as a chat
    client's second turn does.

    ``arrival_s`` is the open-loop send time in seconds from the start of the
    run; for a follow-up it is the think time after the turn it follows.
    Closed-loop runs ignore it.
    """

    request_id: str
    max_tokens: int
    prompt_token_ids: tuple[int, ...] = ()
    messages: tuple[Message, ...] = ()
    arrival_s: float = 0.0
    follows: str | None = None
    tag: str = ""  # what kind of prompt it is (e.g. "code", "math"), for mixed workloads

    def __post_init__(self) -> None:
        if not self.prompt_token_ids and not self.messages:
            raise ValueError(f"request {self.request_id}: needs prompt_token_ids or messages")
        if self.max_tokens < 1:
            raise ValueError(f"request {self.request_id}: max_tokens must be >= 1")

    @property
    def is_chat(self) -> bool:
        return bool(self.messages)
