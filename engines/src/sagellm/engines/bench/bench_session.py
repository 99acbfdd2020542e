"""One ``sagellm bench`` invocation: runs (or a sweep) against one backend, then the report.

The CLI parses flags; this class owns what happens between "backend
ready" and "report written", so tests and scripts can drive a benchmark
without argparse.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sagellm.engines.bench.backends.base import Backend
from sagellm.engines.bench.environment import collect_environment
from sagellm.engines.bench.load_pattern import LoadPattern
from sagellm.engines.bench.machine_reference import REFERENCE_KEY, measure_reference, reference_section
from sagellm.engines.bench.metrics import MetricContext
from sagellm.engines.bench.report import build_report
from sagellm.engines.bench.runner import RunResult, run_spec, summary_metrics
from sagellm.engines.bench.sweep import SweepPlan, SweepResult, run_sweep
from sagellm.engines.bench.workloads.base import RunSpec


class BenchSession:
    """``machine_reference``: time fixed torch work before each run and after the last
    (machine_reference.py), so ``ci-gate`` can judge speed at the baseline machine's pace."""

    def __init__(
        self, backend: Backend, context: MetricContext, seed: int = 0, machine_reference: bool = False
    ) -> None:
        self.backend = backend
        self.context = context
        self.seed = seed
        self.results: list[RunResult] = []
        self.sweep_result: SweepResult | None = None
        self.reference_samples: list[dict[str, float]] | None = [] if machine_reference else None

    def run(self, specs: Sequence[RunSpec], load: LoadPattern | None = None) -> list[RunResult]:
        for spec in specs:
            self._sample_reference()
            self.results.append(run_spec(self.backend, spec, self.context, load, self.seed))
        self._sample_reference()
        return self.results

    def _sample_reference(self) -> None:
        if self.reference_samples is not None:
            self.reference_samples.append(measure_reference())

    def sweep(self, spec: RunSpec, plan: SweepPlan) -> SweepResult:
        self.sweep_result = run_sweep(self.backend, spec, self.context, plan, self.seed)
        self.results.extend(point.result for point in sorted(self.sweep_result.points, key=lambda p: p.rate))
        return self.sweep_result

    @property
    def any_completed(self) -> bool:
        return any(record.ok for result in self.results for record in result.outcome.records)

    def report(self, config: dict[str, Any], elapsed_s: float | None = None) -> dict[str, Any]:
        info = self.backend.info
        config = {**config, "wall_time_s": None if elapsed_s is None else round(elapsed_s, 1)}
        report = build_report(
            self.results,
            summary_metrics(self.results, self.context),
            info,
            collect_environment(info.device),
            config,
            self.notes(),
            self.sweep_result,
        )
        if self.reference_samples:
            report[REFERENCE_KEY] = reference_section(self.reference_samples)
        return report

    def notes(self) -> dict[str, str]:
        """What a reader needs to read the numbers right, in one line each."""
        info = self.backend.info
        in_process = info.backend == "engine"
        notes = {
            "latency": "ms from the moment each request was due (its arrival, or a free user in closed loop)",
            "avg_prefix_hit_rate": (
                "engine.kv.hit_rate(): prompt tokens found in the prefix cache / tokens looked up"
                if in_process
                else "usage.prompt_tokens_details.cached_tokens / prompt_tokens; null when the server does not report it"
            ),
            "comm_share": (
                "0.0: one device, so no inter-device communication in a step"
                if info.world_size == 1
                else "null: not visible over HTTP"
                if info.world_size is None
                else "null: not measured for multi-device runs yet"
            ),
            "mfu": self.context.peak.source
            if self.context.peak
            else "null: no peak known for this device (--peak-tflops)",
            "spec_accept_rate": (
                "share of verified draft tokens the model kept (in-process engine with --speculative); "
                "null without speculation or over HTTP"
            ),
            "peak_mem_mb": (
                "highest RSS of the benchmark process during the run, sampled each step (CPU), "
                "or torch max allocated (CUDA); model weights included"
                if in_process
                else "null: not visible over HTTP"
            ),
        }
        if not in_process:
            notes["evict_count"] = "null over HTTP (so are preemptions)"
        return notes

    def plot(self, out_dir: Path) -> list[Path]:
        from sagellm.engines.bench.plots import plot_latency_cdf, plot_sweep

        paths = [plot_latency_cdf(self.results, out_dir / "latency_cdf.png")]
        if self.sweep_result is not None:
            paths.append(plot_sweep(self.sweep_result, out_dir / "sweep_throughput.png"))
        return paths
