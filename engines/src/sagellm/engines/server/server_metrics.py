"""Server-side metrics, recorded into the engine's own :class:`MetricsRegistry`.

The engine already counts requests, preemptions and TTFT; this adds what
only the server sees (per-request E2E and TPOT, tokens/s, HTTP outcomes)
and keeps the engine's gauges current between steps (an abort changes KV
usage without a step). One registry means ``/metrics`` is one exposition,
rendered by prometheus-client under vLLM's names (prometheus_exposition).
"""

from __future__ import annotations

import threading
import time
from collections import deque

from sagellm.core.metrics import MetricsRegistry
from sagellm.engines.engine.engine_load import EngineLoad
from sagellm.engines.server.prometheus_exposition import exposition

THROUGHPUT_WINDOW_S = 10.0


class ServerMetrics:
    def __init__(self, registry: MetricsRegistry, model_name: str = "") -> None:
        self.registry = registry
        self.model_name = model_name  # the model_name label of every exposed metric
        # The engine creates these on first use; create them now so /metrics shows zeros from the start.
        for name, help_text in (
            ("requests_total", "requests received"),
            ("requests_finished_total", "requests finished"),
            ("requests_aborted_total", "requests aborted"),
            ("preemptions_total", "sequences preempted (recompute)"),
        ):
            registry.counter(name, help_text)
        registry.histogram("ttft_seconds", "time to first token")
        self.e2e = registry.histogram("e2e_seconds", "request latency, arrival to last token")
        self.tpot = registry.histogram("tpot_seconds", "time per output token after the first")
        self.prompt_tokens = registry.counter("prompt_tokens_total", "prompt tokens of admitted requests")
        self.output_tokens = registry.counter("output_tokens_total", "tokens generated")
        self.tokens_per_second = registry.gauge(
            "output_tokens_per_second", f"tokens generated per second over the last {THROUGHPUT_WINDOW_S:.0f} s"
        )
        self.rejected = registry.counter("http_rejected_total", "requests refused with 429 (waiting queue full)")
        self.errors = registry.counter("http_errors_total", "requests answered with an error status")
        self.disconnects = registry.counter("client_disconnects_total", "clients gone before their answer")
        self._window: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()

    def count_api_request(self, api: str) -> None:
        self.registry.counter(f"http_{api}_requests_total", f"{api} API requests").inc()

    def record_step(self, num_tokens: int) -> None:
        """Called by the engine thread after each step."""
        self.output_tokens.inc(num_tokens)
        now = time.monotonic()
        with self._lock:
            self._window.append((now, num_tokens))
            self._trim(now)

    def record_finish(self, arrival: float, first_token: float | None, num_output_tokens: int) -> None:
        now = time.monotonic()
        self.e2e.observe(now - arrival)
        if first_token is not None and num_output_tokens > 1:
            self.tpot.observe((now - first_token) / (num_output_tokens - 1))

    def refresh_engine_gauges(self, load: EngineLoad) -> None:
        """Publish one reading of the engine (taken on the engine thread: only it may read engine state)."""
        registry = self.registry
        registry.gauge("num_running", "running sequences").set(load.num_running)
        registry.gauge("num_waiting", "waiting sequences").set(load.num_waiting)
        registry.gauge("kv_free_blocks", "free + evictable KV blocks").set(load.kv_free_blocks)
        registry.gauge("kv_used_blocks", "KV blocks held by sequences").set(load.kv_total_blocks - load.kv_free_blocks)
        registry.gauge("kv_total_blocks", "KV blocks in the pool").set(load.kv_total_blocks)
        registry.gauge("prefix_hit_rate", "prefix cache hit rate").set(load.prefix_hit_rate)

    def render(self) -> bytes:
        """One scrape, in Prometheus' text format (see prometheus_exposition for the names)."""
        now = time.monotonic()
        with self._lock:
            self._trim(now)
            self.tokens_per_second.set(sum(n for _, n in self._window) / THROUGHPUT_WINDOW_S)
        return exposition(self.registry, self.model_name)

    def _trim(self, now: float) -> None:
        while self._window and self._window[0][0] < now - THROUGHPUT_WINDOW_S:
            self._window.popleft()
