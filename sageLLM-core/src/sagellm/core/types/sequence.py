"""The engine's mutable record of one request while it is being served."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from sagellm.core.types.kv import BlockId
from sagellm.core.types.request import Request


class SequenceStatus(str, Enum):
    """Where a sequence is in its life; the FINISHED_* values say why it ended."""

    WAITING = "waiting"
    RUNNING = "running"
    FINISHED_STOPPED = "stop"
    FINISHED_LENGTH = "length"
    FINISHED_ABORTED = "abort"

    @property
    def is_finished(self) -> bool:
        return self.value in ("stop", "length", "abort")


@dataclass(slots=True)
class SequenceState:
    """Token-level progress of a request.

    ``token_ids`` holds prompt and generated tokens. The model has written
    KV for the first ``num_computed_tokens`` of them; the rest still have to
    run through the model. A decode step is the case where exactly one token
    is uncomputed, so prefill, chunked prefill and decode are one mechanism::

        token_ids:  p p p p p p g g g
                    |<- computed ->|^ uncomputed (1 => decode step)
    """

    request: Request
    token_ids: list[int] = field(default_factory=list)
    num_computed_tokens: int = 0
    num_cached_tokens: int = 0  # prefix-cache hit at the last admission
    block_ids: list[BlockId] = field(default_factory=list)
    status: SequenceStatus = SequenceStatus.WAITING
    num_preemptions: int = 0

    def __post_init__(self) -> None:
        if not self.token_ids:
            self.token_ids = list(self.request.prompt_token_ids)

    @property
    def request_id(self) -> str:
        return self.request.request_id

    @property
    def num_prompt_tokens(self) -> int:
        return len(self.request.prompt_token_ids)

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def num_output_tokens(self) -> int:
        return len(self.token_ids) - self.num_prompt_tokens

    @property
    def output_token_ids(self) -> list[int]:
        return self.token_ids[self.num_prompt_tokens :]

    @property
    def num_uncomputed_tokens(self) -> int:
        return len(self.token_ids) - self.num_computed_tokens

    @property
    def is_finished(self) -> bool:
        return self.status.is_finished
