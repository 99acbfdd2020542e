"""A tiny metrics interface: counters, gauges and histograms.

Modules record through it without depending on a metrics library; the
server renders the same objects as Prometheus text at ``/metrics``.
"""

from __future__ import annotations

import bisect
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

# Latencies from a millisecond up to 10 minutes (a long generation under load takes minutes).
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
)  # fmt: skip


@dataclass
class Counter:
    name: str
    help: str = ""
    value: float = 0.0

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        self.value += amount


@dataclass
class Gauge:
    name: str
    help: str = ""
    value: float = 0.0

    def set(self, value: float) -> None:
        self.value = value


@dataclass
class Histogram:
    name: str
    help: str = ""
    buckets: tuple[float, ...] = DEFAULT_BUCKETS
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        if not self.buckets or any(a >= b for a, b in zip(self.buckets, self.buckets[1:])):
            raise ValueError(f"histogram {self.name}: buckets must be non-empty and strictly increasing")
        self.counts = [0] * (len(self.buckets) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.count += 1


Metric = Counter | Gauge | Histogram
M = TypeVar("M", Counter, Gauge, Histogram)

# Prometheus metric names; anything else would make /metrics unparsable for a scraper.
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


class MetricsRegistry:
    """Named metrics, created on first use, safe to share between threads."""

    def __init__(self, prefix: str = "sagellm") -> None:
        self.prefix = prefix
        self._metrics: dict[str, Metric] = {}
        self._lock = threading.Lock()

    def counter(self, name: str, help: str = "") -> Counter:
        return self._get(name, lambda full: Counter(full, help), Counter)

    def gauge(self, name: str, help: str = "") -> Gauge:
        return self._get(name, lambda full: Gauge(full, help), Gauge)

    def histogram(self, name: str, help: str = "", buckets: tuple[float, ...] = DEFAULT_BUCKETS) -> Histogram:
        return self._get(name, lambda full: Histogram(full, help, buckets), Histogram)

    def _get(self, name: str, make: Callable[[str], M], kind: type[M]) -> M:
        full = f"{self.prefix}_{name}" if self.prefix else name
        with self._lock:
            metric = self._metrics.get(full)
            if metric is None:
                if not _NAME.fullmatch(full):  # checked once, at creation: lookups stay cheap
                    raise ValueError(f"invalid metric name {full!r}: use letters, digits, '_' and ':'")
                metric = make(full)
                self._metrics[full] = metric
        if not isinstance(metric, kind):
            raise TypeError(f"metric {full} already exists as {type(metric).__name__}")
        return metric

    def collect(self) -> list[Metric]:
        with self._lock:
            return list(self._metrics.values())

    def render_prometheus(self) -> str:
        """Prometheus text exposition format, version 0.0.4."""
        lines: list[str] = []
        for metric in self.collect():
            lines.extend(_render(metric))
        return "\n".join(lines) + "\n"


def _render(metric: Metric) -> list[str]:
    kind = {Counter: "counter", Gauge: "gauge", Histogram: "histogram"}[type(metric)]
    help_text = (metric.help or metric.name).replace("\\", "\\\\").replace("\n", "\\n")
    lines = [f"# HELP {metric.name} {help_text}", f"# TYPE {metric.name} {kind}"]
    if isinstance(metric, Histogram):
        cumulative = 0
        for bound, count in zip(metric.buckets, metric.counts):
            cumulative += count
            lines.append(f'{metric.name}_bucket{{le="{bound}"}} {cumulative}')
        lines.append(f'{metric.name}_bucket{{le="+Inf"}} {metric.count}')
        lines.append(f"{metric.name}_sum {metric.total}")
        lines.append(f"{metric.name}_count {metric.count}")
    else:
        lines.append(f"{metric.name} {metric.value}")
    return lines


_default = MetricsRegistry()


def default_registry() -> MetricsRegistry:
    """The process-wide registry modules record into unless given another."""
    return _default
