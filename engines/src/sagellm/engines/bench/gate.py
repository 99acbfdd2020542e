"""Compare a current bench report with a baseline, metric by metric, run by run.

Every run present in both reports (plus the ``all`` summary) is checked
against every threshold whose metric both sides report; a metric that is
null on either side (no SLO given, not visible over HTTP) is shown as
``n/a`` and never fails. Reports that cannot be compared -- another schema
version, another model, or a run whose workload shape changed -- raise
:class:`ReportMismatch` rather than produce a misleading verdict.

Speed is judged against the machine of the moment: when both reports carry
a same-run reference of the same kind (``reference.score``: fixed torch work
timed beside the benchmark, see machine_reference.py), the current report's throughputs are
divided, and its latencies multiplied, by how much faster the machine ran
the reference this time. A machine that is 20 % slower today (another job,
another CPU) then reads as no regression, while an engine that got 25 %
slower on the same machine still does.

Metrics divided by a device peak from a table (MFU) compare like with like
only on the same machine: the same throughput on an Intel Xeon with AMX
reads as 8x less MFU than on an AMD EPYC, because AMX's table peak is 8x
higher. When the two reports ran on different machines (CPU model, ISA
flags, GPU, or table peak) those metrics show as ``n/a (other machine)``
and never fail; throughput and latencies are still gated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sagellm.engines.bench.machine_reference import reference_score_of
from sagellm.engines.bench.thresholds import SUMMARY_RUN, Threshold

THROUGHPUTS = frozenset(
    {"output_throughput_tps", "request_throughput_rps", "goodput_rps", "total_token_throughput_tps"}
)
LATENCIES = frozenset(
    f"{stat}_{kind}_ms" for stat in ("avg", "p50", "p90", "p95", "p99") for kind in ("ttft", "tpot", "itl", "e2e")
)
PEAK_DERIVED = frozenset({"mfu"})  # a throughput divided by the table peak of the device it ran on
OTHER_MACHINE = "n/a (other machine)"


class ReportMismatch(ValueError):
    """The two reports do not describe the same benchmark."""


@dataclass(frozen=True, slots=True)
class Check:
    run: str
    threshold: Threshold
    baseline: float | None
    current: float | None
    comparable: bool = True  # False: a peak-derived metric from two different machines

    @property
    def status(self) -> str:
        if not self.comparable:
            return OTHER_MACHINE
        if self.baseline is None or self.current is None:
            return "n/a"
        return "ok" if self.threshold.passes(self.baseline, self.current) else "REGRESSED"

    @property
    def failed(self) -> bool:
        return self.status == "REGRESSED"

    @property
    def change_pct(self) -> float | None:
        if self.baseline is None or self.current is None:
            return None
        if self.baseline == 0:
            return 0.0 if self.current == 0 else math.copysign(math.inf, self.current)
        return (self.current - self.baseline) / abs(self.baseline) * 100


def compare(baseline: dict[str, Any], current: dict[str, Any], thresholds: Sequence[Threshold]) -> list[Check]:
    check_compatible(baseline, current)
    base_runs, cur_runs = _runs(baseline), _runs(current)
    same_machine = machine(baseline) == machine(current)
    speed = machine_speedup(baseline, current)
    checks = []
    for name in [n for n in cur_runs if n in base_runs]:
        for threshold in [t for t in thresholds if t.applies_to(name)]:
            b, c = base_runs[name].get(threshold.metric), cur_runs[name].get(threshold.metric)
            comparable = same_machine or threshold.metric not in PEAK_DERIVED
            checks.append(
                Check(name, threshold, _number(b), _at_baseline_speed(threshold.metric, c, speed), comparable)
            )
    return checks


def machine_speedup(baseline: dict[str, Any], current: dict[str, Any]) -> float | None:
    """How much faster the machine ran the same-run reference for ``current`` than for ``baseline``."""
    base, cur = reference_score_of(baseline), reference_score_of(current)
    return None if base is None or cur is None else cur / base


def _at_baseline_speed(metric: str, value: Any, speed: float | None) -> float | None:
    number = _number(value)
    if number is None or speed is None:
        return number
    if metric in THROUGHPUTS:
        return number / speed
    if metric in LATENCIES:
        return number * speed
    return number


def machine(report: dict[str, Any]) -> dict[str, Any]:
    """What a report's device-peak-derived metrics depend on: the hardware and the peak chosen for it."""
    environment = report.get("environment", {})
    cpu = environment.get("cpu", {})
    return {
        "cpu": cpu.get("model"),
        "isa": cpu.get("isa"),
        "gpu": environment.get("cuda_device"),
        "device": report.get("target", {}).get("device"),
        "peak": report.get("notes", {}).get("mfu"),
    }


def describe_machine(report: dict[str, Any]) -> str:
    """One line naming where a report ran, for the gate's output."""
    found = machine(report)
    isa = ", ".join(found["isa"] or []) or "unknown ISA"
    cpu = f"{found['cpu'] or 'unknown CPU'} ({isa})"
    gpu = f", GPU {found['gpu']}" if found["gpu"] else ""
    return f"{cpu}{gpu}, device {found['device']}; peak: {found['peak'] or 'none'}"


def check_compatible(baseline: dict[str, Any], current: dict[str, Any]) -> None:
    if baseline.get("schema_version") != current.get("schema_version"):
        raise ReportMismatch(
            f"schema versions differ (baseline {baseline.get('schema_version')}, "
            f"current {current.get('schema_version')}); re-create the baseline"
        )
    if baseline.get("model") != current.get("model"):
        raise ReportMismatch(f"models differ (baseline {baseline.get('model')!r}, current {current.get('model')!r})")
    base_shapes = {r.get("name"): r.get("shape") for r in baseline["runs"]}
    common = [r for r in current["runs"] if r.get("name") in base_shapes]
    if not common:
        raise ReportMismatch("the reports share no run name; were they made with the same preset or workload?")
    for run in common:
        if run.get("shape") != base_shapes[run["name"]]:
            raise ReportMismatch(
                f"run {run['name']} has another workload shape (baseline {base_shapes[run['name']]}, "
                f"current {run.get('shape')})"
            )


def environment_notes(baseline: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Differences that do not block a comparison but explain a surprising one."""
    notes = []
    speed = machine_speedup(baseline, current)
    if speed is None:
        notes.append(
            "no same-run reference of one kind in both reports: throughputs and latencies compared as measured"
        )
    else:
        notes.append(
            f"same-run reference: this machine ran it {speed:.2f}x as fast as the baseline's; "
            "throughputs and latencies are shown at the baseline machine's speed"
        )
    if machine(baseline) != machine(current):
        notes.append(f"other machine: {', '.join(sorted(PEAK_DERIVED))} not gated (a table peak is per machine)")
    for key in ("backend", "device", "dtype", "threads"):
        b, c = baseline.get("target", {}).get(key), current.get("target", {}).get(key)
        if b != c:
            notes.append(f"{key} differs: baseline {b}, current {c}")
    return notes


def checks_table(checks: Sequence[Check]) -> str:
    lines = [
        "| run | metric | baseline | current | change | threshold | status |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for c in checks:
        status = f"**{c.status}**" if c.failed else c.status
        lines.append(
            f"| {c.run} | {c.threshold.metric} | {_fmt(c.baseline)} | {_fmt(c.current)} | "
            f"{_pct(c.change_pct)} | {c.threshold.describe()} | {status} |"
        )
    return "\n".join(lines)


def _runs(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    runs = {str(r.get("name")): r.get("metrics") or {} for r in report["runs"]}
    if isinstance(report.get("summary"), dict) and SUMMARY_RUN not in runs:
        runs[SUMMARY_RUN] = report["summary"]
    return runs


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"


def _pct(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:+.1f}%" if math.isfinite(value) else ("+inf" if value > 0 else "-inf")
