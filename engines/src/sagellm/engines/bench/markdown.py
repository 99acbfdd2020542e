"""Markdown tables of a report: what ``sagellm bench`` prints and writes next to the JSON."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# (header, metric key, decimals); a None value prints as "-".
COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("reqs", "num_requests", 0),
    ("err", "num_errors", 0),
    ("TTFT avg", "avg_ttft_ms", 1),
    ("TTFT p99", "p99_ttft_ms", 1),
    ("TPOT avg", "avg_tpot_ms", 1),
    ("TPOT p99", "p99_tpot_ms", 1),
    ("ITL p99", "p99_itl_ms", 1),
    ("E2E p99", "p99_e2e_ms", 0),
    ("out tok/s", "output_throughput_tps", 1),
    ("req/s", "request_throughput_rps", 2),
    ("prefix hit", "avg_prefix_hit_rate", 2),
    ("preempt", "preemptions", 0),
    ("MFU %", "mfu", 3),
)


def report_markdown(report: dict[str, Any]) -> str:
    target = report.get("target", {})
    config = report.get("config", {})
    what = config.get("preset") and f"preset {config['preset']}" or f"workload {config.get('workload')}"
    lines = [
        f"### sagellm bench: {what}",
        "",
        f"{report.get('model')} on {target.get('backend')} "
        f"({', '.join(str(v) for v in (target.get('device'), target.get('dtype')) if v)}), "
        f"{report.get('created_utc')}. Latencies in ms.",
        "",
        runs_table(report.get("runs", []), report.get("summary")),
    ]
    if "sweep" in report:
        lines += ["", sweep_table(report["sweep"])]
    notes = report.get("notes") or {}
    if notes:
        lines += ["", *(f"- {key}: {text}" for key, text in notes.items())]
    return "\n".join(lines) + "\n"


def runs_table(runs: Sequence[dict[str, Any]], summary: dict[str, Any] | None = None) -> str:
    header = ["run", "shape", "load", *(c[0] for c in COLUMNS)]
    rows = [_row(run["name"], _shape(run.get("shape", {})), _load(run.get("load", {})), run["metrics"]) for run in runs]
    if summary is not None and len(runs) > 1:
        rows.append(_row("**all**", "", "", summary))
    return markdown_table(header, rows, first_left=3)


def sweep_table(sweep: dict[str, Any]) -> str:
    header = ["req/s offered", "SLO met", "attainment", "goodput req/s", "out tok/s", "TTFT p90", "TPOT avg"]
    rows = [
        [
            f"{p['request_rate']:g}",
            "yes" if p["met"] else "no",
            format_value(p.get("slo_attainment"), 2),
            format_value(p.get("goodput_rps"), 2),
            format_value(p.get("output_throughput_tps"), 1),
            format_value(p.get("p90_ttft_ms"), 1),
            format_value(p.get("avg_tpot_ms"), 1),
        ]
        for p in sweep.get("points", [])
    ]
    best, missed = sweep.get("max_rate_meeting_slo"), sweep.get("min_rate_missing_slo")
    if best is None:
        verdict = "no rate met the SLO"
    elif missed is None:
        verdict = f"every rate met the SLO: the max is above {best:g} req/s (raise --sweep-points)"
    else:
        verdict = f"max rate meeting the SLO: {best:g} req/s (missed at {missed:g})"
    return (
        markdown_table(header, rows, first_left=1) + f"\n\n{verdict} (attainment >= {sweep.get('attainment_target')})"
    )


def _row(name: str, shape: str, load: str, metrics: dict[str, Any]) -> list[str]:
    cells = [name, shape, load]
    for _, key, digits in COLUMNS:
        value = metrics.get(key)
        cells.append(format_value(value * 100 if key == "mfu" and value is not None else value, digits))
    return cells


def _shape(shape: dict[str, Any]) -> str:
    if "input_len" in shape and "output_len" in shape:
        return f"{shape['input_len']}->{shape['output_len']}"
    return str(shape.get("workload", ""))


def _load(load: dict[str, Any]) -> str:
    if load.get("mode") == "closed":
        return f"{load.get('concurrency')} conc."
    rate = load.get("request_rate")
    return "trace" if rate is None else ("burst" if rate == "inf" else f"{rate:g}/s")


def format_value(value: Any, digits: int) -> str:
    if value is None:
        return "-"
    if isinstance(value, float | int) and not isinstance(value, bool):
        return f"{value:,.{digits}f}"
    return str(value)


def markdown_table(header: list[str], rows: list[list[str]], first_left: int) -> str:
    align = ["---"] * first_left + ["---:"] * (len(header) - first_left)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
