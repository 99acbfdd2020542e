"""CI regression gate: run `sagellm bench --preset ci` and compare it with the checked-in baseline.

nox's ``bench-engines`` session runs every ``bench_*.py`` here, so CI runs
this on every submission (~2.5 min on 2 cores). Fixed torch work is timed
before each run of the suite and after the last (``--machine-reference``,
``machine_reference.py``) and its median recorded in the report, so the gate
judges speed at the baseline machine's pace: it fails (exit 1) when a metric
of the Q1-Q8 ci suite (the fastest of two runs; three for ``--record``)
regresses beyond ``baselines/thresholds.yaml`` against ``baselines/ci.json``; the summary's
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

from sagellm.engines.bench.machine_reference import REFERENCE_KEY
from sagellm.engines.cli.main import main as sagellm

HERE = Path(__file__).resolve().parent
BASELINES = HERE / "baselines"
GATE_REPEATS = 2  # ~70 s each on 2 cores
RECORD_REPEATS = 3


def measured_report(out: Path, repeats: int) -> Path | None:
    """``bench --preset ci`` ``repeats`` times into ``out``, each with its same-run machine reference;
    the fastest run (summary output throughput) is kept as ``out/bench.json``. None if a bench failed.

    Noise on a shared machine only ever slows a run down, and identical runs minutes apart differed
    by up to 35 % here (baselines/README.md), more than the 25 % regression the gate must catch:
    the best of a few runs is the steadiest estimate of what the engine can do.
    """
    out.mkdir(parents=True, exist_ok=True)
    kept: tuple[float, Path] | None = None
    for attempt in range(1, repeats + 1):
        run_dir = out / f"run{attempt}"
        code = sagellm(["bench", "--preset", "ci", "--out", str(run_dir), "--no-progress", "--machine-reference"])
        if code != 0:
            return None
        report = json.loads((run_dir / "bench.json").read_text())
        throughput = float(report["summary"]["output_throughput_tps"])
        reference = report[REFERENCE_KEY]
        print(
            f"run {attempt}/{repeats}: {throughput:.1f} output tok/s, machine reference median score "
            f"{reference['score']:.0f} (samples {', '.join(str(round(s['score'])) for s in reference['samples'])})",
            file=sys.stderr,
        )
        if kept is None or throughput > kept[0]:
            kept = (throughput, run_dir)
    assert kept is not None
    for name in ("bench.json", "bench.md"):
        shutil.copyfile(kept[1] / name, out / name)
    print(f"kept the fastest run: {kept[1].name}", file=sys.stderr)
    return out / "bench.json"


def run(out: Path, record: bool = False, repeats: int | None = None) -> int:
    path = measured_report(out, repeats or (RECORD_REPEATS if record else GATE_REPEATS))
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
    parser.add_argument(
        "--repeats",
        type=int,
        help=f"runs of the suite; the fastest counts (default {GATE_REPEATS}, {RECORD_REPEATS} with --record)",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    sys.exit(run(arguments.out, arguments.record, arguments.repeats))
