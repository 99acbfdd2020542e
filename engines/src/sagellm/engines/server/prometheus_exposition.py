"""``/metrics`` through prometheus-client, under vLLM's metric names with a ``model_name`` label.

Engines and modules record into core's small :class:`MetricsRegistry`
(no metrics library needed there); this collector reads it at each scrape
and exposes every metric as ``sagellm:<name>{model_name="..."}``, renamed
where vLLM has a name for the same thing, so dashboards built for
``vllm:num_requests_running`` and friends work with the prefix swapped.
Counters are counters (prometheus-client adds ``_total``), gauges gauges,
histograms keep their buckets (up to 10 minutes).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from sagellm.core.metrics import Counter, Gauge, Histogram, MetricsRegistry

PREFIX = "sagellm:"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# The registry's names (without its own prefix) -> vLLM's (without "vllm:").
VLLM_NAMES = {
    "num_running": "num_requests_running",
    "num_waiting": "num_requests_waiting",
    "prompt_tokens_total": "prompt_tokens",
    "output_tokens_total": "generation_tokens",
    "requests_finished_total": "request_success",
    "preemptions_total": "num_preemptions",
    "ttft_seconds": "time_to_first_token_seconds",
    "tpot_seconds": "time_per_output_token_seconds",
    "e2e_seconds": "e2e_request_latency_seconds",
}


class RegistryCollector(Collector):
    """Yields the registry's metrics as prometheus-client families, each labelled with the model."""

    def __init__(self, registry: MetricsRegistry, model_name: str) -> None:
        self.registry = registry
        self.model_name = model_name

    def collect(self) -> Iterator[Metric]:
        labels = ["model_name"]
        values = [self.model_name]
        for metric in self.registry.collect():
            name = exposed_name(metric.name, self.registry.prefix)
            help_text = metric.help or name
            if isinstance(metric, Counter):
                counter = CounterMetricFamily(name.removesuffix("_total"), help_text, labels=labels)
                counter.add_metric(values, metric.value)
                yield counter
            elif isinstance(metric, Gauge):
                gauge = GaugeMetricFamily(name, help_text, labels=labels)
                gauge.add_metric(values, metric.value)
                yield gauge
            else:
                yield _histogram(metric, name, help_text, labels, values)
        yield from self._kv_usage(labels, values)

    def _kv_usage(self, labels: list[str], values: list[str]) -> Iterator[Metric]:
        """vLLM's kv_cache_usage_perc (0..1), from the block gauges."""
        by_name = {m.name: m for m in self.registry.collect() if isinstance(m, Gauge)}
        prefix = f"{self.registry.prefix}_" if self.registry.prefix else ""
        used, total = by_name.get(f"{prefix}kv_used_blocks"), by_name.get(f"{prefix}kv_total_blocks")
        if used is None or total is None or not total.value:
            return
        family = GaugeMetricFamily(f"{PREFIX}kv_cache_usage_perc", "KV cache usage, 1 = full", labels=labels)
        family.add_metric(values, used.value / total.value)
        yield family


def _histogram(metric: Histogram, name: str, help_text: str, labels: list[str], values: list[str]) -> Metric:
    family = HistogramMetricFamily(name, help_text, labels=labels)
    cumulative, buckets = 0, []
    for bound, count in zip(metric.buckets, metric.counts):
        cumulative += count
        buckets.append((repr(float(bound)), float(cumulative)))
    buckets.append(("+Inf", float(metric.count)))
    family.add_metric(values, buckets, metric.total)
    return family


def exposed_name(full_name: str, registry_prefix: str) -> str:
    """``sagellm_num_running`` -> ``sagellm:num_requests_running``; names vLLM lacks keep theirs."""
    short = full_name.removeprefix(f"{registry_prefix}_") if registry_prefix else full_name
    return PREFIX + VLLM_NAMES.get(short, short)


def exposition(registry: MetricsRegistry, model_name: str) -> bytes:
    """One scrape: the text format Prometheus reads."""
    collectors = CollectorRegistry(auto_describe=False)
    collectors.register(RegistryCollector(registry, model_name))
    return generate_latest(collectors)
