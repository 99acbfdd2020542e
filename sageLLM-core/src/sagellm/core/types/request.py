"""What a user asks for: a prompt and how to sample its continuation."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from sagellm.core.errors import InvalidRequestError


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """How to pick each next token and when to stop.

    Validated on construction so that a bad value is reported to the caller
    who sent it, not discovered deep inside a batched step.
    """

    max_tokens: int = 16
    temperature: float = 1.0
    top_k: int = 0  # 0 = disabled
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False
    logprobs: int | None = None

    def __post_init__(self) -> None:
        _check(
            _int(self.max_tokens) and self.max_tokens >= 1,
            f"max_tokens must be an integer >= 1, got {self.max_tokens!r}",
        )
        _check(
            _finite(self.temperature) and self.temperature >= 0.0,
            f"temperature must be a number >= 0, got {self.temperature!r}",
        )
        _check(
            _int(self.top_k) and self.top_k >= 0,
            f"top_k must be an integer >= 0 (0 disables it), got {self.top_k!r}",
        )
        _check(_finite(self.top_p) and 0.0 < self.top_p <= 1.0, f"top_p must be in (0, 1], got {self.top_p!r}")
        _check(_finite(self.min_p) and 0.0 <= self.min_p <= 1.0, f"min_p must be in [0, 1], got {self.min_p!r}")
        _check(
            _finite(self.repetition_penalty) and self.repetition_penalty > 0.0,
            f"repetition_penalty must be > 0, got {self.repetition_penalty!r}",
        )
        _check(
            _finite(self.presence_penalty) and -2.0 <= self.presence_penalty <= 2.0,
            f"presence_penalty must be in [-2, 2], got {self.presence_penalty!r}",
        )
        _check(
            _finite(self.frequency_penalty) and -2.0 <= self.frequency_penalty <= 2.0,
            f"frequency_penalty must be in [-2, 2], got {self.frequency_penalty!r}",
        )
        _check(self.seed is None or _int(self.seed), f"seed must be an integer or None, got {self.seed!r}")
        # A bare string would pass an element-wise check and be split into characters.
        _check(
            isinstance(self.stop, (tuple, list)) and all(isinstance(s, str) and s for s in self.stop),
            f"stop must be a list of non-empty strings, got {self.stop!r}",
        )
        _check(
            isinstance(self.stop_token_ids, (tuple, list)) and all(_int(t) and t >= 0 for t in self.stop_token_ids),
            f"stop_token_ids must be a list of integers >= 0, got {self.stop_token_ids!r}",
        )
        _check(isinstance(self.ignore_eos, bool), f"ignore_eos must be a boolean, got {self.ignore_eos!r}")
        _check(
            self.logprobs is None or (_int(self.logprobs) and 0 <= self.logprobs <= 20),
            f"logprobs must be an integer in [0, 20], got {self.logprobs!r}",
        )
        # JSON gives lists; store tuples so the value stays immutable and hashable, as annotated.
        if not isinstance(self.stop, tuple):
            object.__setattr__(self, "stop", tuple(self.stop))
        if not isinstance(self.stop_token_ids, tuple):
            object.__setattr__(self, "stop_token_ids", tuple(self.stop_token_ids))

    @property
    def is_greedy(self) -> bool:
        """Temperature 0 means argmax: no randomness, no seed needed."""
        return self.temperature == 0.0


def _int(value: object) -> bool:
    """An ``int`` that is not a ``bool`` (``True`` is an int to Python, never a valid count)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise InvalidRequestError(message)


@dataclass(frozen=True, slots=True)
class Request:
    """One generation request as the engine receives it (already tokenized)."""

    request_id: str
    prompt_token_ids: tuple[int, ...]
    sampling: SamplingParams = field(default_factory=SamplingParams)
    arrival_time: float = 0.0
    priority: int = 0  # lower value = more urgent, as in vLLM
    namespace: str = ""  # keeps prefix-cache entries of different models/adapters apart

    def __post_init__(self) -> None:
        _check(
            isinstance(self.request_id, str) and bool(self.request_id),
            f"request_id must be a non-empty string, got {self.request_id!r}",
        )
        _check(
            isinstance(self.prompt_token_ids, (tuple, list)) and len(self.prompt_token_ids) > 0,
            "prompt_token_ids must be a non-empty list of token ids (the prompt needs at least one token)",
        )
        _check(
            isinstance(self.sampling, SamplingParams),
            f"sampling must be a SamplingParams, got {type(self.sampling).__name__}",
        )
        if not isinstance(self.prompt_token_ids, tuple):
            object.__setattr__(self, "prompt_token_ids", tuple(self.prompt_token_ids))
