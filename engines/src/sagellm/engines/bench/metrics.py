"""From a run's records to the numbers the report carries.

Definitions (per request; latencies from the moment the request was due):

    TTFT  first token - due              E2E   last token (end of stream) - due
    TPOT  (E2E - TTFT) / (output - 1)    ITL   each gap between consecutive streamed tokens
    goodput  requests/s that finished within both SLOs (an unset SLO always holds)

TPOT averages per request (a 100-token answer counts as much as a
5-token one); ITL pools every gap of every request. ``avg_tbt_ms`` is
TPOT under the name sageLLM's earlier benchmark used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sagellm.engines.bench.device_peak import DevicePeak
from sagellm.engines.bench.flops import request_flops
from sagellm.engines.bench.record import RequestRecord, RunOutcome
from sagellm.engines.bench.stats import distribution
from sagellm.engines.model.config import ModelConfig


@dataclass(frozen=True, slots=True)
class SLO:
    ttft_ms: float | None = None
    tpot_ms: float | None = None

    @property
    def is_set(self) -> bool:
        return self.ttft_ms is not None or self.tpot_ms is not None

    def met_by(self, record: RequestRecord) -> bool:
        if not record.ok or record.ttft_s is None:
            return False
        if self.ttft_ms is not None and record.ttft_s * 1000 > self.ttft_ms:
            return False
        tpot = record.tpot_s
        return self.tpot_ms is None or tpot is None or tpot * 1000 <= self.tpot_ms


@dataclass(frozen=True, slots=True)
class MetricContext:
    """What the numbers need beyond the records: SLOs, the model's shape, the device's peak, the price."""

    slo: SLO = SLO()
    model_config: ModelConfig | None = None
    peak: DevicePeak | None = None
    price_per_hour: float | None = None
    world_size: int | None = 1


def compute_metrics(outcome: RunOutcome, context: MetricContext) -> dict[str, Any]:
    records = outcome.records
    ok = [r for r in records if r.ok]
    duration = outcome.duration_s
    total_out = sum(r.num_output_tokens for r in ok)
    total_in = sum(r.num_prompt_tokens for r in ok)
    metrics: dict[str, Any] = {
        "num_requests": len(records),
        "num_completed": len(ok),
        "num_errors": len(records) - len(ok),
        "error_rate": round((len(records) - len(ok)) / len(records), 4) if records else 0.0,
        "duration_s": round(duration, 3),
        "total_prompt_tokens": total_in,
        "total_output_tokens": total_out,
        "num_clipped": outcome.num_clipped,
    }
    metrics |= distribution("ttft", [r.ttft_s for r in ok if r.ttft_s is not None])
    metrics |= distribution("tpot", [r.tpot_s for r in ok if r.tpot_s is not None])
    metrics["avg_tbt_ms"] = metrics["avg_tpot_ms"]
    metrics |= distribution("itl", [gap for r in ok for gap in r.itls_s])
    metrics |= distribution("e2e", [r.e2e_s for r in ok if r.e2e_s is not None])
    metrics |= _throughput(len(ok), total_in, total_out, duration)
    metrics |= _goodput(records, duration, context.slo)
    stats = outcome.stats
    metrics |= {
        "avg_prefix_hit_rate": _round(stats.kv_hit_rate if stats.kv_hit_rate is not None else _usage_hit_rate(ok)),
        "evict_count": stats.evict_count,
        "preemptions": stats.preemptions,
        "spec_accept_rate": stats.spec_accept_rate,
        "peak_mem_mb": _round(stats.peak_mem_mb, 1),
        "comm_share": 0.0 if context.world_size == 1 else None,
    }
    metrics |= _mfu(ok, duration, context)
    metrics["cost_per_1m_output_tokens"] = _cost(total_out, duration, context.price_per_hour)
    return metrics


def _throughput(completed: int, total_in: int, total_out: int, duration: float) -> dict[str, Any]:
    if duration <= 0:
        return dict.fromkeys(("request_throughput_rps", "output_throughput_tps", "total_token_throughput_tps"))
    return {
        "request_throughput_rps": round(completed / duration, 4),
        "output_throughput_tps": round(total_out / duration, 3),
        "total_token_throughput_tps": round((total_in + total_out) / duration, 3),
    }


def _goodput(records: list[RequestRecord], duration: float, slo: SLO) -> dict[str, Any]:
    if not slo.is_set or not records:
        return {"goodput_rps": None, "slo_attainment": None}
    good = sum(slo.met_by(r) for r in records)
    return {
        "goodput_rps": round(good / duration, 4) if duration > 0 else None,
        "slo_attainment": round(good / len(records), 4),
    }


def _usage_hit_rate(records: list[RequestRecord]) -> float | None:
    """Over HTTP: the share of prompt tokens the server reported as cached (None if it never says)."""
    reported = [r for r in records if r.num_cached_tokens is not None]
    prompt = sum(r.num_prompt_tokens for r in reported)
    return sum(r.num_cached_tokens or 0 for r in reported) / prompt if reported and prompt else None


def _mfu(records: list[RequestRecord], duration: float, context: MetricContext) -> dict[str, Any]:
    if context.model_config is None or duration <= 0:
        return {"achieved_tflops": None, "mfu": None}
    config = context.model_config
    flops = sum(
        request_flops(config, r.num_prompt_tokens, r.num_cached_tokens or 0, r.num_output_tokens) for r in records
    )
    achieved = flops / duration
    mfu = achieved / context.peak.flops_per_s if context.peak else None
    return {"achieved_tflops": _significant(achieved / 1e12), "mfu": None if mfu is None else _significant(mfu)}


def _cost(total_out: int, duration: float, price_per_hour: float | None) -> float | None:
    if not price_per_hour or total_out <= 0:
        return None
    return round(price_per_hour * duration / 3600.0 / total_out * 1e6, 4)


def _significant(value: float, digits: int = 4) -> float:
    """Rounded to significant digits: an MFU of 3e-7 (a toy model) must not print as 0."""
    return float(f"{value:.{digits}g}")


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)
