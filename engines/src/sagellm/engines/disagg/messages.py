"""What the coordinator and the two worker processes tell each other (pickled over multiprocessing queues).

KV never travels here: it goes prefill -> decode over the KV transfer
channel, with the request's tokens and sampling as the transfer's metadata.

    coordinator --PrefillJob--> prefill worker --FirstToken--> coordinator
                                      | KV blocks + metadata (channel)
                                      v
                                decode worker --DecodeStep--> coordinator
    coordinator --Abort / StatsRequest / Reset / Shutdown--> both workers --WorkerStats / WorkerReady--> coordinator
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sagellm.core.types import SamplingParams, StepOutput

PREFILL, DECODE = "prefill", "decode"


@dataclass(frozen=True, slots=True)
class PrefillJob:
    request_id: str
    prompt: str | tuple[int, ...]
    sampling: SamplingParams


@dataclass(frozen=True, slots=True)
class StatsRequest:
    """Ask a worker for its counters (it answers with :class:`WorkerStats`); ``reset`` zeroes them after."""

    reset: bool = True


@dataclass(frozen=True, slots=True)
class Reset:
    """Start over, idle: a fresh engine (empty pool and prefix cache) around the loaded model; answered
    with :class:`WorkerReady`. Benchmarks reset between runs, so no run inherits another's cached prompts."""


@dataclass(frozen=True, slots=True)
class Shutdown:
    pass


@dataclass(frozen=True, slots=True)
class Abort:
    """Drop these requests: out of the engine if there, else (decode side) refuse their KV when it comes."""

    request_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Join:
    """A remote worker's first message: the role it takes and what it sets for itself (``JOIN_OVERRIDES``)."""

    role: str
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Welcome:
    """The coordinator's answer to a :class:`Join`: the deployment's config, as plain data."""

    config_data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class WorkerReady:
    role: str
    pid: int
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class WorkerFailed:
    role: str
    error: str  # the formatted traceback
    request_id: str | None = None  # set when only this request failed and the worker carries on


@dataclass(frozen=True, slots=True)
class FirstToken:
    """The prefill worker sampled a request's first token; ``finish_reason`` set if that already ends it."""

    request_id: str
    token_id: int
    text: str
    prompt_token_ids: tuple[int, ...]
    finish_reason: str | None = None
    logprobs: tuple[float, ...] | None = None
    top_logprobs: tuple[tuple[tuple[int, float], ...], ...] | None = None


@dataclass(frozen=True, slots=True)
class DecodeStep:
    """Everything one decode-worker step produced, in one message."""

    outputs: tuple[StepOutput, ...]  # as the decode engine saw them: its prompt is the real prompt + first token
    kv_free_blocks: int = 0  # the decode pool after the step, for the server's gauges
    prefix_hit_rate: float = 0.0


@dataclass(frozen=True, slots=True)
class WorkerStats:
    role: str
    stats: dict[str, Any]


Event = WorkerReady | WorkerFailed | FirstToken | DecodeStep | WorkerStats
