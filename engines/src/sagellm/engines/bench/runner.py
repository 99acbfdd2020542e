"""Runs a list of workload runs against one backend and computes each run's metrics."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sagellm.engines.bench.backends.base import Backend
from sagellm.engines.bench.load_pattern import LoadPattern, apply_load
from sagellm.engines.bench.metrics import MetricContext, compute_metrics
from sagellm.engines.bench.record import BackendStats, RunOutcome
from sagellm.engines.bench.workloads.base import RunSpec


@dataclass(slots=True)
class RunResult:
    spec: RunSpec
    load: LoadPattern
    outcome: RunOutcome
    metrics: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.spec.name,
            "title": self.spec.title,
            "shape": self.spec.shape,
            "load": self.load.to_json(),
            "metrics": self.metrics,
        }


def run_spec(
    backend: Backend, spec: RunSpec, context: MetricContext, load: LoadPattern | None = None, seed: int = 0
) -> RunResult:
    """One run: ``load`` (else the workload's own) decides when requests go out."""
    load = load or spec.load
    requests = apply_load(spec.requests, load, seed)
    outcome = backend.run(spec.name, requests, load.concurrency)
    return RunResult(spec, load, outcome, compute_metrics(outcome, context))


def run_specs(
    backend: Backend,
    specs: Sequence[RunSpec],
    context: MetricContext,
    load: LoadPattern | None = None,
    seed: int = 0,
) -> list[RunResult]:
    return [run_spec(backend, spec, context, load, seed) for spec in specs]


def summary_metrics(results: Sequence[RunResult], context: MetricContext) -> dict[str, Any]:
    """The metrics of every request of every run taken together, over the runs' total time."""
    records = [r for result in results for r in result.outcome.records]
    duration = sum(result.outcome.duration_s for result in results)
    stats = [result.outcome.stats for result in results]
    clipped = sum(result.outcome.num_clipped for result in results)
    return compute_metrics(RunOutcome(records, duration, _combined(stats, results), clipped), context)


def _combined(stats: list[BackendStats], results: Sequence[RunResult]) -> BackendStats:
    def total(values: list[int | None]) -> int | None:
        known = [v for v in values if v is not None]
        return sum(known) if known else None

    weights = [sum(r.num_prompt_tokens for r in res.outcome.records) for res in results]
    rated = [(s.kv_hit_rate, w) for s, w in zip(stats, weights) if s.kv_hit_rate is not None]
    weight = sum(w for _, w in rated)
    peaks = [s.peak_mem_mb for s in stats if s.peak_mem_mb is not None]
    return BackendStats(
        kv_hit_rate=sum(rate * w for rate, w in rated) / weight if rated and weight else None,
        evict_count=total([s.evict_count for s in stats]),
        preemptions=total([s.preemptions for s in stats]),
        peak_mem_mb=max(peaks) if peaks else None,
        spec_accept_rate=None,
    )
