"""The command line the kernel benchmarks share: parse, run, write JSON and Markdown, print the table.

Not a benchmark itself (the leading underscore keeps ``bench-*`` sessions from running it).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def bench_main(
    name: str, doc: str | None, run: Callable[[bool, int], dict[str, Any]], markdown: Callable[[dict[str, Any]], str]
) -> int:
    """``run(quick, threads)`` -> report; writes ``<name>.json`` and ``<name>.md`` to ``--out``."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke-test size (a few seconds)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="output directory")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = parser.parse_args()
    report = run(args.quick, args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(report, indent=2))
    table = markdown(report)
    (args.out / f"{name}.md").write_text(table)
    print(table)
    return 0
