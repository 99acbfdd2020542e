"""Bench metrics from hand-made timestamp records: definitions, percentiles, goodput, FLOPs, MFU, cost."""

from __future__ import annotations

import pytest

from sagellm.engines.bench.device_peak import cpu_peak, detect_peak, gpu_peak
from sagellm.engines.bench.flops import request_flops
from sagellm.engines.bench.metrics import SLO, MetricContext, compute_metrics
from sagellm.engines.bench.record import BackendStats, RequestRecord, RunOutcome
from sagellm.engines.bench.stats import distribution
from sagellm.engines.model.config import ModelConfig


def record(rid: str, start: float, times: list[float], prompt: int = 10, cached: int | None = 0) -> RequestRecord:
    return RequestRecord(
        rid,
        start,
        num_prompt_tokens=prompt,
        max_tokens=len(times),
        token_times_s=list(times),
        num_output_tokens=len(times),
        num_cached_tokens=cached,
        end_s=times[-1] if times else start,
        finish_reason="length",
    )


def test_ttft_tpot_itl_e2e_definitions() -> None:
    r = record("a", 1.0, [1.5, 1.6, 1.8, 2.1])
    assert r.ttft_s == pytest.approx(0.5)
    assert r.e2e_s == pytest.approx(1.1)
    assert r.tpot_s == pytest.approx((2.1 - 1.5) / 3)  # after the first token, per token
    assert r.itls_s == pytest.approx([0.1, 0.2, 0.3])
    assert record("b", 0.0, [0.2]).tpot_s is None  # one token: no TPOT


def test_percentiles_interpolate_linearly() -> None:
    d = distribution("ttft", [0.1, 0.2, 0.3, 0.4, 0.5])
    assert d["avg_ttft_ms"] == pytest.approx(300)
    assert d["p50_ttft_ms"] == pytest.approx(300)
    assert d["p90_ttft_ms"] == pytest.approx(460)
    assert d["p99_ttft_ms"] == pytest.approx(496)
    assert distribution("x", [])["p95_x_ms"] is None


def test_run_metrics_throughput_goodput_and_errors() -> None:
    records = [
        record("fast", 0.0, [0.1, 0.2, 0.3]),  # TTFT 100 ms, TPOT 100 ms
        record("slow-first", 0.0, [0.9, 1.0, 1.1]),  # TTFT 900 ms: misses the TTFT SLO
        record("slow-decode", 0.5, [0.6, 1.1, 1.6]),  # TPOT 500 ms: misses the TPOT SLO
        RequestRecord("failed", 0.0, 10, 3, end_s=0.2, error="HTTP 500"),
    ]
    outcome = RunOutcome(records, duration_s=2.0, stats=BackendStats(kv_hit_rate=0.25, preemptions=3))
    m = compute_metrics(outcome, MetricContext(slo=SLO(ttft_ms=500, tpot_ms=200)))
    assert (m["num_requests"], m["num_completed"], m["num_errors"]) == (4, 3, 1)
    assert m["error_rate"] == 0.25
    assert m["output_throughput_tps"] == pytest.approx(9 / 2.0)
    assert m["request_throughput_rps"] == pytest.approx(3 / 2.0)
    assert m["goodput_rps"] == pytest.approx(1 / 2.0)
    assert m["slo_attainment"] == pytest.approx(0.25)  # errors count as misses
    assert m["avg_ttft_ms"] == pytest.approx((100 + 900 + 100) / 3, abs=1e-3)  # reports round to 1 µs
    assert m["avg_tpot_ms"] == m["avg_tbt_ms"] == pytest.approx((100 + 100 + 500) / 3, abs=1e-3)
    assert m["p50_itl_ms"] == pytest.approx(100)
    assert m["avg_prefix_hit_rate"] == 0.25 and m["preemptions"] == 3
    assert m["comm_share"] == 0.0
    assert m["goodput_rps"] is not None and m["mfu"] is None and m["cost_per_1m_output_tokens"] is None
    no_slo = compute_metrics(outcome, MetricContext())
    assert no_slo["goodput_rps"] is None and no_slo["slo_attainment"] is None


def test_hit_rate_from_usage_when_the_backend_has_no_counter() -> None:
    records = [record("a", 0, [0.1, 0.2], prompt=100, cached=50), record("b", 0, [0.1, 0.2], prompt=100, cached=0)]
    assert compute_metrics(RunOutcome(records, 1.0), MetricContext())["avg_prefix_hit_rate"] == 0.25
    unknown = [record("a", 0, [0.1, 0.2], cached=None)]
    assert compute_metrics(RunOutcome(unknown, 1.0), MetricContext())["avg_prefix_hit_rate"] is None


def test_cost_per_million_output_tokens() -> None:
    records = [record("a", 0, [0.1 * i for i in range(1, 101)])]  # 100 tokens
    m = compute_metrics(RunOutcome(records, 3600.0), MetricContext(price_per_hour=2.0))
    assert m["cost_per_1m_output_tokens"] == pytest.approx(2.0 / 100 * 1e6)


TINY = ModelConfig("llama", 100, 8, 16, 2, 2, 1, 4, 64, tie_word_embeddings=True)


def test_request_flops_counts_matmuls_lm_head_and_attention() -> None:
    embed = 100 * 8
    body = TINY.num_parameters - embed
    # 4 prompt tokens, none cached, 3 outputs: positions computed = 4 + 2; keys attended 1..6.
    expected = 2 * body * 6 + 2 * embed * 3 + 4 * 2 * 2 * 4 * sum(range(1, 7))
    assert request_flops(TINY, 4, 0, 3) == pytest.approx(expected)
    # 2 cached prompt tokens are neither multiplied nor attended from.
    cached = 2 * body * 4 + 2 * embed * 3 + 4 * 2 * 2 * 4 * sum(range(3, 7))
    assert request_flops(TINY, 4, 2, 3) == pytest.approx(cached)


def test_mfu_uses_the_device_peak() -> None:
    records = [record("a", 0, [0.5, 1.0], prompt=4, cached=0)]
    peak = cpu_peak({"avx2"}, "float32", cores=2)
    assert peak is not None and peak.flops_per_s == pytest.approx(2 * 32 * 2.5e9)
    m = compute_metrics(RunOutcome(records, 1.0), MetricContext(model_config=TINY, peak=peak))
    assert m["mfu"] == pytest.approx(request_flops(TINY, 4, 0, 2) / peak.flops_per_s, rel=1e-3)


def test_device_peak_table() -> None:
    assert cpu_peak({"avx2", "avx512f", "avx512_bf16"}, "bfloat16", 1).flops_per_s == pytest.approx(128 * 2.5e9)  # type: ignore[union-attr]
    assert cpu_peak({"sse4_2"}, "float32", 4) is None
    h100 = gpu_peak("NVIDIA H100 80GB HBM3", "bfloat16")
    assert h100 is not None and h100.flops_per_s == pytest.approx(989e12)
    assert gpu_peak("NVIDIA H100 PCIe", "bfloat16").flops_per_s == pytest.approx(756e12)  # type: ignore[union-attr]
    assert gpu_peak("NVIDIA A100-SXM4-40GB", "float32").flops_per_s == pytest.approx(19.5e12)  # type: ignore[union-attr]
    assert detect_peak("remote", "bfloat16", set(), 1) is None
    assert detect_peak("cuda:0 (NVIDIA H200)", "bfloat16", set(), 1) is not None
