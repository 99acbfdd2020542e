"""``sagellm ci-gate``: fail CI when a bench report regresses beyond its thresholds.

Exit codes: 0 no metric regressed beyond its threshold, 1 at least one did,
2 the files cannot be read or do not describe the same benchmark.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from sagellm.engines.bench.gate import ReportMismatch, checks_table, compare, describe_machine, environment_notes
from sagellm.engines.bench.report import read_report
from sagellm.engines.bench.thresholds import DEFAULT_THRESHOLDS, Threshold, load_thresholds

EXIT_PASS, EXIT_REGRESSED, EXIT_BAD_INPUT = 0, 1, 2

DESCRIPTION = """Compare a current `sagellm bench` JSON report with a baseline and fail on regressions.

Every run present in both reports (and their summary, "all") is checked for
each metric in the thresholds file; direction matters (lower is better for
latencies, higher for throughput and hit rate). A metric missing or null on
either side shows as n/a and never fails. Metrics relative to a device's
table peak (MFU) are gated only when both reports ran on the same machine
(CPU model and ISA flags, GPU, peak); the gate prints where each side ran.

Exit codes: 0 pass, 1 a metric regressed beyond its threshold, 2 unreadable
or mismatched files (other schema version, model or workload shape)."""

EPILOG = """example:
  sagellm bench --preset ci --out current/
  sagellm ci-gate --baseline engines/benchmarks/baselines/ci.json --current current/bench.json \\
                  --thresholds engines/benchmarks/baselines/thresholds.yaml"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "ci-gate",
        help="compare two bench reports; exit 1 on a regression",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--baseline", type=Path, required=True, help="the reference report (bench.json)")
    parser.add_argument("--current", type=Path, required=True, help="the report to judge (bench.json)")
    parser.add_argument(
        "--thresholds",
        type=Path,
        help="YAML of per-metric allowances (default: built in; 60%% on TPOT, E2E and throughput, 80%% on mean TTFT, "
        "100%% on p99s, 0.05 absolute on the prefix hit rate, 0 on the error rate)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        thresholds: Sequence[Threshold] = load_thresholds(args.thresholds) if args.thresholds else DEFAULT_THRESHOLDS
        baseline, current = read_report(args.baseline), read_report(args.current)
        checks = compare(baseline, current, thresholds)
    except (ReportMismatch, ValueError) as exc:
        print(f"sagellm ci-gate: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"baseline ran on: {describe_machine(baseline)}")
    print(f"current ran on:  {describe_machine(current)}\n")
    print(checks_table(checks))
    for note in environment_notes(baseline, current):
        print(f"note: {note}")
    failed = [c for c in checks if c.failed]
    compared = sum(not c.status.startswith("n/a") for c in checks)
    if failed:
        names = ", ".join(f"{c.run}/{c.threshold.metric}" for c in failed[:8])
        more = f" and {len(failed) - 8} more" if len(failed) > 8 else ""
        print(f"\nci-gate: FAIL: {len(failed)} of {compared} checks regressed beyond their threshold: {names}{more}")
        return EXIT_REGRESSED
    print(f"\nci-gate: pass: {compared} checks within their thresholds")
    return EXIT_PASS
