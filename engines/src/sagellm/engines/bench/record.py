"""What was measured for one request, and for one run of a workload."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class RequestRecord:
    """Timings of one request, in seconds from the start of its run.

    ``start_s`` is when the request was due (its open-loop arrival, or the
    moment a closed-loop user was free), not when the backend got round to
    it: time spent queued behind a busy engine step is part of the latency a
    user sees. ``token_times_s`` holds one entry per streamed delta that
    carried text or tokens; a delta may carry several tokens (speculative
    decoding, server-side batching of SSE chunks), so ``num_output_tokens``
    is counted separately (usage, or token ids).
    """

    request_id: str
    start_s: float
    num_prompt_tokens: int = 0
    max_tokens: int = 0
    token_times_s: list[float] = field(default_factory=list)
    num_output_tokens: int = 0
    num_cached_tokens: int | None = None
    end_s: float | None = None
    finish_reason: str | None = None
    error: str | None = None
    tag: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None and self.end_s is not None

    @property
    def ttft_s(self) -> float | None:
        return self.token_times_s[0] - self.start_s if self.token_times_s else None

    @property
    def e2e_s(self) -> float | None:
        return None if self.end_s is None else self.end_s - self.start_s

    @property
    def tpot_s(self) -> float | None:
        """Mean time per output token after the first (vLLM's TPOT); None with fewer than 2 tokens."""
        if self.end_s is None or not self.token_times_s or self.num_output_tokens < 2:
            return None
        return (self.end_s - self.token_times_s[0]) / (self.num_output_tokens - 1)

    @property
    def itls_s(self) -> list[float]:
        """Gaps between consecutive streamed deltas (inter-token latencies)."""
        times = self.token_times_s
        return [b - a for a, b in zip(times, times[1:])]


@dataclass(slots=True)
class BackendStats:
    """Engine-side counters of one run; None where the backend cannot see them (HTTP)."""

    kv_hit_rate: float | None = None
    evict_count: int | None = None
    preemptions: int | None = None
    peak_mem_mb: float | None = None
    spec_accept_rate: float | None = None


@dataclass(slots=True)
class RunOutcome:
    """Everything a backend hands back for one run."""

    records: list[RequestRecord]
    duration_s: float
    stats: BackendStats = field(default_factory=BackendStats)
    num_clipped: int = 0  # requests cut to fit the model's context (see prompt_resolver)
