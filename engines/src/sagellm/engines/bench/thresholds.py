"""How much worse than the baseline a metric may get before ``sagellm ci-gate`` fails.

Each metric has a direction (``lower`` or ``higher`` is better) and one
allowance: ``relative`` (a fraction of the baseline: 0.6 lets a latency
grow 60 % or a throughput drop 60 %) or ``absolute`` (in the metric's own
units: 0.05 lets a hit rate fall 5 points). Defaults are generous because
CI machines are noisy and the ``ci`` preset's runs are short; a tail
percentile of a handful of requests gets more room than a mean.

YAML form (``engines/benchmarks/baselines/thresholds.yaml``)::

    metrics:             # every run (Q1..Q8 and the summary)
      avg_ttft_ms: {better: lower, relative: 0.8}
      avg_prefix_hit_rate: {better: higher, absolute: 0.05}
    summary:             # the summary over all runs only: steadier, so held tighter
      output_throughput_tps: {better: higher, relative: 0.15}
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SUMMARY_RUN = "all"  # the report's summary over every run
SUMMARY_SECTION = "summary"  # YAML: tighter thresholds checked on the summary only


@dataclass(frozen=True, slots=True)
class Threshold:
    metric: str
    higher_is_better: bool
    allowance: float
    relative: bool
    run: str | None = None  # checked on this run only (the "all" summary); None: on every run

    def applies_to(self, run: str) -> bool:
        return self.run is None or self.run == run

    def describe(self) -> str:
        sign = "-" if self.higher_is_better else "+"
        return f"{sign}{self.allowance * 100:g}%" if self.relative else f"{sign}{self.allowance:g}"

    def regression(self, baseline: float, current: float) -> float:
        """How far ``current`` is worse than ``baseline`` in this threshold's units (<= 0: not worse)."""
        worse = baseline - current if self.higher_is_better else current - baseline
        if not self.relative:
            return worse
        if baseline == 0:
            return float("inf") if worse > 0 else 0.0
        return worse / abs(baseline)

    def passes(self, baseline: float, current: float) -> bool:
        return self.regression(baseline, current) <= self.allowance + 1e-12


def _t(
    metric: str, better: str, relative: float | None = None, absolute: float | None = None, run: str | None = None
) -> Threshold:
    allowance = relative if relative is not None else absolute
    assert allowance is not None
    return Threshold(metric, better == "higher", allowance, relative is not None, run)


DEFAULT_THRESHOLDS: tuple[Threshold, ...] = (
    _t("avg_ttft_ms", "lower", relative=0.8),  # two-request prefills: +54 % seen between identical runs
    _t("p99_ttft_ms", "lower", relative=1.0),
    _t("avg_tpot_ms", "lower", relative=0.6),
    _t("p99_tpot_ms", "lower", relative=1.0),
    _t("avg_e2e_ms", "lower", relative=0.6),
    _t("output_throughput_tps", "higher", relative=0.6),
    _t("request_throughput_rps", "higher", relative=0.6),
    _t("goodput_rps", "higher", relative=0.6),
    _t("avg_prefix_hit_rate", "higher", absolute=0.05),
    _t("error_rate", "lower", absolute=0.0),
    _t("mfu", "higher", relative=0.6),
    _t("cost_per_1m_output_tokens", "lower", relative=0.6),
    _t("peak_mem_mb", "lower", relative=0.25),
    # The summary: every token of every run counts, and speed is taken at the baseline machine's pace.
    _t("output_throughput_tps", "higher", relative=0.15, run=SUMMARY_RUN),
    _t("avg_tpot_ms", "lower", relative=0.2, run=SUMMARY_RUN),
    _t("avg_e2e_ms", "lower", relative=0.2, run=SUMMARY_RUN),
)


def load_thresholds(path: Path) -> list[Threshold]:
    """Thresholds from YAML; ValueError with a one-line reason on a bad file."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    metrics = data.get("metrics") if isinstance(data, dict) else None
    if not isinstance(metrics, dict) or not metrics:
        raise ValueError(f"{path}: expected a 'metrics:' mapping of metric -> {{better, relative|absolute}}")
    summary = data.get(SUMMARY_SECTION) or {}
    if not isinstance(summary, dict):
        raise ValueError(f"{path}: '{SUMMARY_SECTION}:' must map metric -> {{better, relative|absolute}}")
    every_run = [_parse(str(name), spec, path) for name, spec in metrics.items()]
    return every_run + [_parse(str(name), spec, path, run=SUMMARY_RUN) for name, spec in summary.items()]


def _parse(name: str, spec: Any, path: Path, run: str | None = None) -> Threshold:
    where = f"{path}: metric {name}"
    if not isinstance(spec, dict):
        raise ValueError(f"{where}: expected {{better: lower|higher, relative: X}} or absolute: X")
    better = spec.get("better")
    if better not in ("lower", "higher"):
        raise ValueError(f"{where}: 'better' must be lower or higher, got {better!r}")
    kinds = [k for k in ("relative", "absolute") if k in spec]
    if len(kinds) != 1:
        raise ValueError(f"{where}: give exactly one of 'relative' or 'absolute'")
    value = spec[kinds[0]]
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{where}: {kinds[0]} must be a number >= 0, got {value!r}")
    return Threshold(name, better == "higher", float(value), kinds[0] == "relative", run)
