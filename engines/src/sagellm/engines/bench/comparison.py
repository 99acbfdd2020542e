"""Side by side: the same workload on sageLLM and on peers, with ratios.

Every peer runs the same runs (same token ids, same loads, same seed) in
the same process right after sageLLM, so a noisy machine hits all sides
alike; ratios are what to read, absolute numbers move with the machine.
A ratio is always "sageLLM is N times better": throughput ours / theirs,
latency theirs / ours.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sagellm.engines.bench.markdown import format_value, markdown_table


@dataclass(frozen=True, slots=True)
class ComparedMetric:
    key: str
    label: str
    higher_is_better: bool


COMPARED: tuple[ComparedMetric, ...] = (
    ComparedMetric("output_throughput_tps", "out tok/s", True),
    ComparedMetric("p50_ttft_ms", "TTFT p50 ms", False),
    ComparedMetric("p99_ttft_ms", "TTFT p99 ms", False),
    ComparedMetric("p50_tpot_ms", "TPOT p50 ms", False),
    ComparedMetric("avg_prefix_hit_rate", "hit rate", True),
)
RATIO_KEYS = ("output_throughput_tps", "p50_ttft_ms", "p99_ttft_ms", "p50_tpot_ms")


def ratio(ours: float | None, theirs: float | None, higher_is_better: bool) -> float | None:
    """How many times better sageLLM is (> 1: better); None where either side is missing or zero."""
    if not ours or not theirs:
        return None
    return round(ours / theirs if higher_is_better else theirs / ours, 3)


def build_comparison(ours: dict[str, Any], peers: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The ``compare`` section of the JSON report: every side's metrics per run, and ratios to each peer."""
    sides = [ours, *peers]
    names = [_side_name(report) for report in sides]
    rows = []
    for run_name, title in _runs(ours):
        per_side = {name: _metrics(report, run_name) for name, report in zip(names, sides)}
        rows.append({"run": run_name, "title": title, "metrics": per_side, "ratios": _ratios(per_side, names)})
    summary = {name: _pick(report.get("summary", {})) for name, report in zip(names, sides)}
    return {
        "sides": names,
        "note": "ratio = how many times better sageLLM is: throughput ours/theirs, latency theirs/ours",
        "runs": rows,
        "summary": {"metrics": summary, "ratios": _ratios(summary, names)},
        "peers": [{"name": n, "target": r.get("target", {})} for n, r in zip(names[1:], peers)],
    }


def comparison_markdown(comparison: dict[str, Any]) -> str:
    names: list[str] = comparison["sides"]
    header = ["run", "metric", *names, *(f"x vs {peer}" for peer in names[1:])]
    rows: list[list[str]] = []
    entries = [(row["run"], row["metrics"], row["ratios"]) for row in comparison["runs"]]
    entries.append(("all", comparison["summary"]["metrics"], comparison["summary"]["ratios"]))
    for run_name, metrics, ratios in entries:
        for index, metric in enumerate(COMPARED):
            values = [format_value(metrics[name].get(metric.key), 3) for name in names]
            ratio_cells = [format_value(ratios.get(peer, {}).get(metric.key), 2) for peer in names[1:]]
            rows.append([run_name if index == 0 else "", metric.label, *values, *ratio_cells])
    return "## Side by side\n\n" + markdown_table(header, rows, first_left=2) + "\n" + comparison["note"] + "\n"


def _side_name(report: dict[str, Any]) -> str:
    backend = str(report.get("target", {}).get("backend", "?"))
    return "sageLLM" if backend in ("engine", "openai") else backend


def _runs(report: dict[str, Any]) -> list[tuple[str, str]]:
    return [(run["name"], run.get("title", run["name"])) for run in report.get("runs", [])]


def _metrics(report: dict[str, Any], run_name: str) -> dict[str, Any]:
    for run in report.get("runs", []):
        if run["name"] == run_name:
            return _pick(run.get("metrics", {}))
    return _pick({})


def _pick(metrics: dict[str, Any]) -> dict[str, Any]:
    return {metric.key: metrics.get(metric.key) for metric in COMPARED}


def _ratios(per_side: dict[str, dict[str, Any]], names: Sequence[str]) -> dict[str, dict[str, float | None]]:
    ours = per_side[names[0]]
    by_key = {metric.key: metric for metric in COMPARED}
    return {
        peer: {key: ratio(ours.get(key), per_side[peer].get(key), by_key[key].higher_is_better) for key in RATIO_KEYS}
        for peer in names[1:]
    }
