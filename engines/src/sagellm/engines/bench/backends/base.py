"""What a benchmark target is: something that runs requests and times every token."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sagellm.engines.bench.record import RunOutcome
from sagellm.engines.bench.request import BenchRequest
from sagellm.engines.bench.tokenizer_source import TokenizerLike
from sagellm.engines.model.config import ModelConfig


@dataclass(frozen=True, slots=True)
class GenerationOptions:
    """Sampling every request shares. Greedy, and EOS ignored so each request produces exactly
    ``max_tokens`` tokens (as vLLM's benchmark does): runs stay comparable across engines and commits."""

    temperature: float = 0.0
    ignore_eos: bool = True


DEFAULT_GENERATION = GenerationOptions()


@dataclass(frozen=True, slots=True)
class TargetInfo:
    """Who was measured, for the report; ``model_config`` feeds the FLOP estimate (None if unknown)."""

    backend: str
    model: str
    device: str
    dtype: str | None = None
    max_model_len: int | None = None
    world_size: int | None = 1  # None: unknown (a remote server)
    settings: dict[str, Any] = field(default_factory=dict)
    model_config: ModelConfig | None = None


class Backend(Protocol):
    @property
    def info(self) -> TargetInfo: ...

    @property
    def tokenizer(self) -> TokenizerLike: ...

    def run(self, label: str, requests: Sequence[BenchRequest], concurrency: int | None) -> RunOutcome:
        """Send ``requests`` (closed loop with ``concurrency`` users, else open loop on their arrivals)."""
        ...

    def warmup(self) -> None:
        """One short untimed request, so the first measured run does not pay for lazy initialisation."""
        ...
