"""CI regression gate: run `sagellm bench --preset ci` and compare it with the checked-in baseline.

nox's ``bench-engines`` session runs every ``bench_*.py`` here, so CI runs
this on every submission (~1 min on 2 cores). A fixed GEMM is timed before
and after the benchmark (``machine_reference.py``) and recorded in the
report, so the gate judges speed at the baseline machine's pace: it fails
(exit 1) when a metric of the Q1-Q8 ci suite regresses beyond
``baselines/thresholds.yaml`` against ``baselines/ci.json``; the summary's
throughput and mean latencies are held to 15-20 %, so an engine 25 %
slower fails while machine noise does not (see ``baselines/README.md``)::

    python benchmarks/bench_ci_gate.py [--out DIR]     # from engines/
    python benchmarks/bench_ci_gate.py --record        # re-record baselines/ci.json on this machine
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from sagellm.engines.bench.machine_reference import REFERENCE_KEY, measure_reference_gflops, reference_section
from sagellm.engines.cli.main import main as sagellm

HERE = Path(__file__).resolve().parent
BASELINES = HERE / "baselines"


def measured_report(out: Path) -> Path | None:
    """``bench --preset ci`` into ``out``, with the same-run machine reference added; None if the bench failed."""
    out.mkdir(parents=True, exist_ok=True)
    before = measure_reference_gflops()
    code = sagellm(["bench", "--preset", "ci", "--out", str(out), "--no-progress"])
    if code != 0:
        return None
    after = measure_reference_gflops()
    path = out / "bench.json"
    report = json.loads(path.read_text())
    report[REFERENCE_KEY] = reference_section(before, after)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"machine reference: {before:.0f} GFLOP/s before, {after:.0f} after", file=sys.stderr)
    return path


def run(out: Path, record: bool = False) -> int:
    path = measured_report(out)
    if path is None:
        return 1
    if record:
        shutil.copyfile(path, BASELINES / "ci.json")
        print(f"recorded {BASELINES / 'ci.json'}", file=sys.stderr)
        return 0
    return sagellm(
        [
            "ci-gate",
            "--baseline",
            str(BASELINES / "ci.json"),
            "--current",
            str(path),
            "--thresholds",
            str(BASELINES / "thresholds.yaml"),
        ]
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="accepted for nox; the ci preset is already the quick one")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "ci_gate", help="where bench.json/.md go")
    parser.add_argument("--record", action="store_true", help="make this run the new baseline instead of gating it")
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    sys.exit(run(arguments.out, arguments.record))
