"""A tiny real in-process benchmark run on the embedded model: the numbers must be sane."""

from __future__ import annotations

from typing import Any

import pytest

from sagellm.core.config import load_config
from sagellm.engines.bench.backends.engine import EngineBackend
from sagellm.engines.bench.bench_session import BenchSession
from sagellm.engines.bench.device_peak import cpu_peak
from sagellm.engines.bench.metrics import SLO, MetricContext
from sagellm.engines.bench.request import BenchRequest
from sagellm.engines.bench.workloads import WORKLOADS, WorkloadOptions
from sagellm.engines.engine.device import cpu_flags


@pytest.fixture(scope="module")
def backend(llm: Any) -> EngineBackend:
    return EngineBackend(llm.engine, llm.config)


def test_two_synthetic_requests(backend: EngineBackend, llm: Any) -> None:
    spec = WORKLOADS["synthetic"](backend.tokenizer, WorkloadOptions(num_requests=2, input_len=24, output_len=4))
    peak = cpu_peak(cpu_flags(), "float32", 2) or cpu_peak({"avx2"}, "float32", 2)
    context = MetricContext(slo=SLO(ttft_ms=60_000, tpot_ms=60_000), model_config=llm.engine.model_config, peak=peak)
    session = BenchSession(backend, context)
    backend.warmup()
    (result,) = session.run([spec])
    for record in result.outcome.records:
        assert record.ok and record.finish_reason == "length"
        assert record.num_prompt_tokens == 24 and record.num_output_tokens == 4
        assert record.token_times_s == sorted(record.token_times_s) and len(record.token_times_s) == 4
        assert 0 < record.ttft_s <= record.e2e_s < 60  # type: ignore[operator]
    m = result.metrics
    assert m["num_completed"] == 2 and m["error_rate"] == 0.0 and m["total_output_tokens"] == 8
    assert 0 < m["avg_ttft_ms"] <= m["avg_e2e_ms"] and m["avg_tpot_ms"] > 0 and m["p99_itl_ms"] > 0
    assert m["output_throughput_tps"] > 0 and m["request_throughput_rps"] > 0
    assert m["goodput_rps"] == m["request_throughput_rps"] and m["slo_attainment"] == 1.0
    assert m["avg_prefix_hit_rate"] == 0.0  # random prompts share nothing
    assert m["preemptions"] == 0 and m["evict_count"] == 0 and m["peak_mem_mb"] > 100
    assert 0 < m["mfu"] < 1 and m["comm_share"] == 0.0 and m["spec_accept_rate"] is None
    report = session.report({"workload": "synthetic"})
    assert report["target"]["backend"] == "engine" and report["target"]["dtype"] == "float32"


def test_second_turn_hits_the_prefix_cache(backend: EngineBackend) -> None:
    question = "Describe the water cycle in three sentences, mentioning evaporation and rain. " * 3
    first = BenchRequest("t1", 4, messages=({"role": "user", "content": question},))
    second = BenchRequest("t2", 4, messages=({"role": "user", "content": "Shorter, please."},), follows="t1")
    outcome = backend.run("chat", [first, second], concurrency=1)
    t1, t2 = outcome.records
    assert t2.num_prompt_tokens > t1.num_prompt_tokens + 4
    assert t2.num_cached_tokens is not None and t2.num_cached_tokens >= 16  # at least one full block reused
    assert t2.start_s >= t1.end_s  # sent only once turn 1 was answered
    assert outcome.stats.kv_hit_rate is not None and outcome.stats.kv_hit_rate > 0


def test_requests_longer_than_the_context_are_clipped(llm: Any) -> None:
    config = load_config(model={"dtype": "float32", "device": "cpu", "max_model_len": 64}, kv_pool={"num_blocks": 16})
    short = EngineBackend(llm.engine, config)
    request = BenchRequest("long", 8, prompt_token_ids=tuple([1000] * 100))
    outcome = short.run("clip", [request], concurrency=1)
    (record,) = outcome.records
    assert outcome.num_clipped == 1 and record.ok and short.info.max_model_len == 64
    assert record.num_prompt_tokens == 64 - 8 and record.num_output_tokens == 8


def test_open_loop_arrivals_are_respected(backend: EngineBackend) -> None:
    requests = [
        BenchRequest("early", 2, prompt_token_ids=tuple(range(1000, 1010))),
        BenchRequest("late", 2, prompt_token_ids=tuple(range(2000, 2010)), arrival_s=0.3),
    ]
    early, late = backend.run("open", requests, concurrency=None).records
    assert early.start_s == 0.0 and late.start_s == pytest.approx(0.3)
    assert late.token_times_s[0] >= 0.3
