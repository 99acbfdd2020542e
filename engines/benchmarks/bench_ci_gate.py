"""CI regression gate: run `sagellm bench --preset ci` and compare it with the checked-in baseline.

nox's ``bench-engines`` session runs every ``bench_*.py`` here, so CI runs
this on every submission (~1 min on 2 cores). It fails (exit 1) when a
metric of the Q1-Q8 ci suite regresses beyond ``baselines/thresholds.yaml``
against ``baselines/ci.json`` (generous thresholds: CI machines are noisy;
see ``baselines/README.md`` for how to re-create the baseline)::

    python benchmarks/bench_ci_gate.py [--out DIR]     # from engines/
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sagellm.engines.cli.main import main as sagellm

HERE = Path(__file__).resolve().parent
BASELINES = HERE / "baselines"


def run(out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    code = sagellm(["bench", "--preset", "ci", "--out", str(out), "--no-progress"])
    if code != 0:
        return code
    return sagellm(
        [
            "ci-gate",
            "--baseline",
            str(BASELINES / "ci.json"),
            "--current",
            str(out / "bench.json"),
            "--thresholds",
            str(BASELINES / "thresholds.yaml"),
        ]
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="accepted for nox; the ci preset is already the quick one")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "ci_gate", help="where bench.json/.md go")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(run(parse_args().out))
