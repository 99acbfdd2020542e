"""/metrics as Prometheus reads it: vLLM's names under ``sagellm:``, a model_name label, real types.

Parsed back with prometheus-client's own parser, so a malformed line or a
count exposed as a gauge fails here rather than in a scraper.
"""

from __future__ import annotations

import logging

import torch
from prometheus_client.parser import text_string_to_metric_families

from sagellm.core.metrics import MetricsRegistry
from sagellm.core.types import KVLayout
from sagellm.engines.cli.serve import log_to_stderr
from sagellm.engines.engine.engine_load import EngineLoad
from sagellm.engines.engine.kv_capacity import describe_kv
from sagellm.engines.server.server_metrics import ServerMetrics


def _families(metrics: ServerMetrics) -> dict[str, object]:
    return {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}


def test_names_types_and_labels_follow_vllm() -> None:
    metrics = ServerMetrics(MetricsRegistry(), "smol")
    metrics.refresh_engine_gauges(
        EngineLoad(num_running=3, num_waiting=1, kv_total_blocks=100, kv_free_blocks=75, prefix_hit_rate=0.5)
    )
    metrics.record_step(4)
    metrics.e2e.observe(400.0)  # a long request: it must land in a finite bucket
    families = _families(metrics)
    kinds = {name: family.type for name, family in families.items()}  # type: ignore[attr-defined]
    assert kinds["sagellm:num_requests_running"] == "gauge"
    assert kinds["sagellm:num_requests_waiting"] == "gauge"
    assert kinds["sagellm:generation_tokens"] == "counter"  # exposed as sagellm:generation_tokens_total
    assert kinds["sagellm:request_success"] == "counter"
    assert kinds["sagellm:time_to_first_token_seconds"] == "histogram"
    assert kinds["sagellm:e2e_request_latency_seconds"] == "histogram"
    samples = {
        (s.name, s.labels.get("le")): s
        for family in families.values()
        for s in family.samples  # type: ignore[attr-defined]
    }
    assert all(s.labels["model_name"] == "smol" for s in samples.values())
    assert samples[("sagellm:num_requests_running", None)].value == 3
    assert samples[("sagellm:generation_tokens_total", None)].value == 4
    assert samples[("sagellm:kv_cache_usage_perc", None)].value == 0.25
    assert samples[("sagellm:e2e_request_latency_seconds_bucket", "600.0")].value == 1  # buckets reach 10 minutes
    assert samples[("sagellm:e2e_request_latency_seconds_bucket", "300.0")].value == 0


def test_kv_capacity_line_names_tokens_and_bytes() -> None:
    layout = KVLayout(num_layers=2, num_kv_heads=1, head_dim=8, block_size=16, num_blocks=10, dtype="float32")
    text = describe_kv(layout, torch.device("cpu"))
    assert text.startswith("KV cache: 10 blocks x 16 tokens = 160 tokens, ") and "GiB" in text


def test_log_level_reaches_sagellms_own_loggers() -> None:
    log_to_stderr("warning")
    assert not logging.getLogger("sagellm.engines.engine.kv_capacity").isEnabledFor(logging.INFO)
    log_to_stderr("debug")
    assert logging.getLogger("sagellm.engines.engine.kv_capacity").isEnabledFor(logging.DEBUG)
    log_to_stderr("info")
