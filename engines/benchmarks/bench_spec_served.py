"""Speculation through ``sagellm serve``, one client, against llama.cpp's own server, in the same run.

Input-grounded chat requests (``sagellm bench --workload grounded``: edit,
quote from or summarise a bundled passage; greedy, answers end at EOS or
128 tokens) go one at a time (default; ``--levels`` for more) to:

* ``served``: ``sagellm serve`` at its defaults (speculation off);
* ``served+ngram``: ``sagellm serve --speculative ngram``;
* ``llama-server``: llama.cpp's server on the same GGUF with the same
  thread count (found by ``--llama-server``, ``$SAGELLM_LLAMA_SERVER`` or
  the build script's folder; left out, with a note, when absent).

Each side runs ``--rounds`` times (interleaved); the median counts. Target
(issue 17): ``served+ngram`` >= 2x ``llama-server`` at one client.

Usage::

    python engines/benchmarks/bench_spec_served.py          # ~3 min on 2 cores
    python engines/benchmarks/bench_spec_served.py --levels 1 16 --rounds 1
    python engines/benchmarks/bench_spec_served.py --quick  # smoke: 2 short requests a side

Writes ``results/spec_served.json`` and ``.md`` (or ``--out DIR``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench_serving_overhead import THREADS, measure, side_table

from sagellm.core.errors import NotSupportedError
from sagellm.core.ports import ephemeral_port
from sagellm.engines.bench.backends.served import peer_command
from sagellm.engines.bench.environment import cpu_model_name
from sagellm.engines.bench.report import write_json_and_markdown
from sagellm.engines.bench.served_peers import LLAMA_SERVER_ENV, sagellm_command
from sagellm.engines.bench.server_process import ServerCommand, running_server
from sagellm.engines.model.loader import resolve_model_path

HERE = Path(__file__).resolve().parent


def bench_argv(url: str, concurrency: int, requests: int, output_len: int) -> list[str]:
    return [sys.executable, "-m", "sagellm.engines.cli.main", "bench", "--workload", "grounded",
            "--output-len", str(output_len), "--stop-at-eos", "--backend", "openai", "--base-url", url,
            "--concurrency", str(concurrency), "--num-requests", str(requests), "--json", "--no-progress"]  # fmt: skip


def sides_for(args: argparse.Namespace) -> tuple[dict[str, ServerCommand], list[str]]:
    sides = {
        "served": sagellm_command(ephemeral_port()),
        "served+ngram": sagellm_command(ephemeral_port(), ("--speculative", "ngram")),
    }
    notes = []
    if args.llama_server:
        os.environ[LLAMA_SERVER_ENV] = args.llama_server
    try:
        sides["llama-server"] = peer_command("llama-server", resolve_model_path(None), max(args.levels), THREADS)
        notes.append(f"llama-server: {' '.join(sides['llama-server'].argv)}")
    except NotSupportedError as exc:
        notes.append(f"llama-server left out: {exc}")
    return sides, notes


def run_round(args: argparse.Namespace, sides: dict[str, ServerCommand]) -> dict[str, dict[int, dict[str, float]]]:
    result: dict[str, dict[int, dict[str, float]]] = {}
    for side, command in sides.items():
        with ExitStack() as stack:
            print(f"  starting {side} ...", file=sys.stderr, flush=True)
            url = stack.enter_context(running_server(command))
            result[side] = {}
            for level in args.levels:
                requests = max(args.requests, 2 * level)
                result[side][level] = measure(bench_argv(url, level, requests, args.output_len))
                tps = result[side][level]["output_throughput_tps"]
                print(f"  {side:>13} {level:>3} users: {tps:7.1f} tok/s", file=sys.stderr, flush=True)
    return result


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"Input-grounded requests through the server, {report['rounds']} round(s), median; {report['cpu']}, "
        f"{THREADS} threads. tok/s (TPOT ms / TTFT ms).",
        "",
        *side_table(report["median"], report["ratios"], report["levels"]),
        "",
        *[f"- {note}" for note in report["notes"]],
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", type=int, nargs="+", default=[1], help="concurrent clients (default 1)")
    parser.add_argument("--requests", type=int, default=12, help="requests per level, at least 2x the level")
    parser.add_argument("--output-len", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--llama-server", help="llama.cpp's llama-server binary (or its folder)")
    parser.add_argument("--quick", action="store_true", help="smoke run: one client, 2 requests of 16 tokens, 1 round")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    if args.quick:
        args.levels, args.requests, args.output_len, args.rounds = [1], 2, 16, 1
    sides, notes = sides_for(args)
    rounds = []
    for index in range(args.rounds):
        print(f"round {index + 1}/{args.rounds}", file=sys.stderr, flush=True)
        rounds.append(run_round(args, sides))
    median = {
        side: {
            level: {key: statistics.median(r[side][level][key] for r in rounds) for key in rounds[0][side][level]}
            for level in args.levels
        }
        for side in sides
    }
    tps = {side: {level: median[side][level]["output_throughput_tps"] for level in args.levels} for side in sides}
    ratio_pairs = [("served+ngram / served", "served+ngram", "served")]
    if "llama-server" in sides:
        ratio_pairs += [("served+ngram / llama-server", "served+ngram", "llama-server")]
        ratio_pairs += [("served / llama-server", "served", "llama-server")]
    report = {
        "cpu": cpu_model_name(),
        "rounds": args.rounds,
        "levels": args.levels,
        "median": median,
        "all_rounds": rounds,
        "ratios": {name: {lv: tps[a][lv] / tps[b][lv] for lv in args.levels} for name, a, b in ratio_pairs},
        "notes": notes,
    }
    write_json_and_markdown(report, markdown(report), args.out, "spec_served")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
