"""Find the highest request rate at which a workload still meets its latency SLO.

Open-loop Poisson runs at rising rates, ``start x factor^k``, until one
misses the SLO (fewer than ``attainment`` of its requests within both the
TTFT and TPOT limits); then a few bisection runs between the last rate
that met it and the first that did not narrow the answer down:

    rate   0.5    1     2     4 (miss)   -> bisect 3 (met), 3.5 (miss)
    max rate meeting the SLO = 3
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sagellm.engines.bench.backends.base import Backend
from sagellm.engines.bench.load_pattern import LoadPattern
from sagellm.engines.bench.metrics import MetricContext
from sagellm.engines.bench.runner import RunResult, run_spec
from sagellm.engines.bench.workloads.base import RunSpec

POINT_METRICS = (  # what the report keeps of each sweep point (the full metrics are in its run)
    "slo_attainment",
    "goodput_rps",
    "request_throughput_rps",
    "output_throughput_tps",
    "p90_ttft_ms",
    "p99_ttft_ms",
    "avg_tpot_ms",
    "p90_tpot_ms",
)


@dataclass(frozen=True, slots=True)
class SweepPlan:
    start: float = 0.5
    factor: float = 2.0
    max_points: int = 6  # rising rates tried before giving up on finding a miss
    refine_steps: int = 2  # bisection runs after the first miss
    attainment: float = 0.9  # share of requests that must meet the SLO

    def __post_init__(self) -> None:
        if not self.start > 0 or not self.factor > 1 or self.max_points < 1 or self.refine_steps < 0:
            raise ValueError("sweep: start > 0, factor > 1, max_points >= 1, refine_steps >= 0")
        if not 0 < self.attainment <= 1:
            raise ValueError("sweep: attainment must be in (0, 1]")

    def rising(self) -> Iterator[float]:
        for k in range(self.max_points):
            yield round(self.start * self.factor**k, 6)


@dataclass(slots=True)
class SweepPoint:
    rate: float
    result: RunResult
    met: bool


@dataclass(slots=True)
class SweepResult:
    plan: SweepPlan
    points: list[SweepPoint] = field(default_factory=list)

    @property
    def max_rate_meeting_slo(self) -> float | None:
        met = [p.rate for p in self.points if p.met]
        return max(met) if met else None

    @property
    def min_rate_missing_slo(self) -> float | None:
        """None when every rate tried met the SLO: the true maximum lies above the sweep."""
        missed = [p.rate for p in self.points if not p.met]
        return min(missed) if missed else None

    def to_json(self) -> dict[str, Any]:
        return {
            "attainment_target": self.plan.attainment,
            "max_rate_meeting_slo": self.max_rate_meeting_slo,
            "min_rate_missing_slo": self.min_rate_missing_slo,
            "points": [
                {"request_rate": p.rate, "met": p.met, **{k: p.result.metrics.get(k) for k in POINT_METRICS}}
                for p in sorted(self.points, key=lambda p: p.rate)
            ],
        }


def run_sweep(backend: Backend, spec: RunSpec, context: MetricContext, plan: SweepPlan, seed: int = 0) -> SweepResult:
    if not context.slo.is_set:
        raise ValueError("a sweep needs an SLO (TTFT and/or TPOT limit)")
    sweep = SweepResult(plan)

    def measure(rate: float) -> bool:
        result = run_spec(backend, _named(spec, rate), context, LoadPattern(request_rate=rate), seed)
        met = (result.metrics.get("slo_attainment") or 0.0) >= plan.attainment
        sweep.points.append(SweepPoint(rate, result, met))
        return met

    low, high = 0.0, None
    for rate in plan.rising():
        if not measure(rate):
            high = rate
            break
        low = rate
    for _ in range(plan.refine_steps):
        if high is None:
            break
        middle = round((low + high) / 2, 6)
        if measure(middle):
            low = middle
        else:
            high = middle
    return sweep


def _named(spec: RunSpec, rate: float) -> RunSpec:
    return RunSpec(f"{spec.name}@{rate:g}rps", spec.requests, spec.load, spec.shape, spec.title)
