"""ServedEngine: what the HTTP server needs of an engine, so more than one kind can sit behind it.

``LLMEngine`` is one (the whole model in this process, or tensor-parallel
ranks behind it); ``DisaggregatedEngine`` is another (prefill and decode
in two worker processes). The server's engine thread is the only caller,
so an implementation need not be thread-safe.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from sagellm.core.metrics import MetricsRegistry
from sagellm.core.types import SamplingParams, StepOutput
from sagellm.engines.engine.engine_load import EngineLoad
from sagellm.engines.tokenizer import Tokenizer


@runtime_checkable
class ServedEngine(Protocol):
    tokenizer: Tokenizer
    model_name: str
    max_model_len: int
    max_waiting: int
    metrics: MetricsRegistry

    @property
    def num_waiting(self) -> int: ...

    def add_request(self, prompt: Sequence[int], sampling: SamplingParams, request_id: str) -> str:
        """Queue a request or raise (ServerOverloadedError, InvalidRequestError) before anything runs."""
        ...

    def abort_request(self, request_id: str) -> bool:
        """Forget the request at once: no output for it follows, its KV is freed."""
        ...

    def step(self) -> list[StepOutput]:
        """Advance, returning what came out; may block briefly. EngineDeadError if it never can again."""
        ...

    def has_unfinished(self) -> bool: ...

    def check_health(self) -> None:
        """Called while idle: EngineDeadError if a process the engine needs is gone."""
        ...

    def load(self) -> EngineLoad: ...
