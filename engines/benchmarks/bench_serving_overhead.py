"""Served vs offline, in the same run: what the HTTP server costs, and how it compares with llama.cpp's server.

At each concurrency level (default 1, 16 and 64 users, closed loop, 128-token
prompts, 128 greedy tokens with EOS ignored) the same ``sagellm bench``
client measures, one after the other:

* ``offline``: the in-process engine (``--backend engine``), no HTTP;
* ``served``: ``sagellm serve`` at its defaults, over HTTP with streaming;
* ``llama-server``: llama.cpp's own server on the same GGUF, with as many
  parallel slots as the top level has users and the same thread count
  (found by ``--llama-server``, ``$SAGELLM_LLAMA_SERVER`` or the build
  script's folder; left out, with a note, when absent);
* ``vllm``: vLLM's CPU build (``vllm serve``, its defaults, in the roof's dtype) on the same
  weights as a Hugging Face directory, with ``--vllm`` (it takes ~2 min to start);
* ``disaggregated``: ``sagellm serve --disaggregated`` (prefill and decode
  workers, one thread each, KV over shm), with ``--disaggregated``.

Each side runs ``--rounds`` times (interleaved) and the median counts. Each
round also times the roof: the step's matmuls alone as dense GEMMs (in the
dtype ``auto`` picks here: bf16 with bf16 instructions, else float32) at
each level's row count (``sagellm.engines.bench.step_roof``). Targets
(issue 16): served >= 0.95x offline at every level; batch-1 served >= 1.1x
llama-server; 16 and 64 users >= 1.5x vLLM; 64 users >= 40 % of the roof.

Usage::

    python engines/benchmarks/bench_serving_overhead.py                 # ~6 min on 2 cores
    python engines/benchmarks/bench_serving_overhead.py --vllm --rounds 1
    python engines/benchmarks/bench_serving_overhead.py --disaggregated --rounds 1 --out engines/benchmarks/results/served_disaggregated
    python engines/benchmarks/bench_serving_overhead.py --quick         # smoke: 1 and 4 users, short

Writes ``results/serving_overhead.json`` and ``.md`` (or ``--out DIR``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from sagellm.core.errors import NotSupportedError
from sagellm.core.ports import ephemeral_port
from sagellm.engines.bench.backends.served import peer_command
from sagellm.engines.bench.environment import cpu_model_name
from sagellm.engines.bench.report import write_json_and_markdown
from sagellm.engines.bench.served_peers import LLAMA_SERVER_ENV, sagellm_command
from sagellm.engines.bench.server_process import ServerCommand, running_server
from sagellm.engines.bench.step_roof import measure_step_roof
from sagellm.engines.bench.tokenizer_source import load_tokenizer
from sagellm.engines.engine.device import cpu_dtype, dtype_name
from sagellm.engines.model.loader import resolve_model_path

HERE = Path(__file__).resolve().parent
THREADS = 2
METRICS = ("output_throughput_tps", "avg_tpot_ms", "avg_ttft_ms")


def bench_argv(levels_args: Sequence[str], concurrency: int, requests: int) -> list[str]:
    return [sys.executable, "-m", "sagellm.engines.cli.main", "bench", "--workload", "synthetic", *levels_args,
            "--concurrency", str(concurrency), "--num-requests", str(requests), "--json", "--no-progress"]  # fmt: skip


def measure(argv: list[str]) -> dict[str, float]:
    """One ``sagellm bench`` run's throughput, TPOT and TTFT."""
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr[-2000:]}")
    metrics = json.loads(done.stdout)["runs"][0]["metrics"]
    if metrics["num_errors"]:
        raise RuntimeError(f"{metrics['num_errors']} requests failed: {' '.join(argv)}")
    return {key: float(metrics[key]) for key in METRICS}


def run_round(
    args: argparse.Namespace, sides: dict[str, ServerCommand | None]
) -> dict[str, dict[int, dict[str, float]]]:
    """Every side at every level, once; and the roof."""
    shape = ["--input-len", str(args.input_len), "--output-len", str(args.output_len)]
    _, model_config = load_tokenizer(None)
    result: dict[str, dict[int, dict[str, float]]] = {"roof": {}}
    for level in args.levels:
        roof = measure_step_roof(model_config, level, cpu_dtype())
        result["roof"][level] = {"output_throughput_tps": roof.tokens_per_s, "avg_tpot_ms": roof.step_ms,
                                 "avg_ttft_ms": 0.0}  # fmt: skip
        print(f"  {'roof':>12} {level:>3} rows: {roof.tokens_per_s:7.1f} tok/s ({roof.gflops:.0f} GFLOP/s)",
              file=sys.stderr, flush=True)  # fmt: skip
    for side, command in sides.items():
        with ExitStack() as stack:
            target = ["--backend", "engine", "--threads", str(THREADS)]
            if command is not None:
                print(f"  starting {side} ...", file=sys.stderr, flush=True)
                url = stack.enter_context(running_server(command))
                target = ["--backend", "openai", "--base-url", url, "--send-token-ids"]
            result[side] = {}
            for level in args.levels:
                requests = max(4, 2 * level)
                result[side][level] = measure(bench_argv([*shape, *target], level, requests))
                tps = result[side][level]["output_throughput_tps"]
                print(f"  {side:>12} {level:>3} users: {tps:7.1f} tok/s", file=sys.stderr, flush=True)
    return result


def median_of(rounds: list[dict[str, dict[int, dict[str, float]]]]) -> dict[str, dict[int, dict[str, float]]]:
    sides = rounds[0]
    return {
        side: {
            level: {key: statistics.median(r[side][level][key] for r in rounds) for key in METRICS}
            for level in sides[side]
        }
        for side in sides
    }


def ratios(table: dict[str, dict[int, dict[str, float]]], over: str, under: str) -> dict[int, float] | None:
    if over not in table or under not in table:
        return None
    return {
        level: table[over][level]["output_throughput_tps"] / table[under][level]["output_throughput_tps"]
        for level in table[over]
    }


def markdown(report: dict[str, Any]) -> str:
    table = report["median"]
    levels = list(next(iter(table.values())))
    lines = [
        f"Served vs offline, {report['shape']}, {report['rounds']} round(s), median; {report['cpu']}, "
        f"{THREADS} threads, {report['dtype']}. tok/s (TPOT ms / TTFT ms); roof: the step's matmuls alone as GEMMs "
        "(tok/s, step ms).",
        "",
        *side_table(table, report["ratios"], levels),
        "",
        *[f"- {note}" for note in report["notes"]],
    ]
    return "\n".join(lines) + "\n"


def side_table(
    table: dict[str, dict[int, dict[str, float]]], ratio_rows: dict[str, dict[int, float] | None], levels: list[int]
) -> list[str]:
    """Markdown rows: each side's tok/s (TPOT / TTFT) per level, then the ratios."""
    lines = ["| side | " + " | ".join(f"{level} users" for level in levels) + " |", "|---|" + "---:|" * len(levels)]
    for side, by_level in table.items():
        cells = [
            f"{m['output_throughput_tps']:.1f} ({m['avg_tpot_ms']:.1f} / {m['avg_ttft_ms']:.0f})"
            for m in by_level.values()
        ]
        lines.append(f"| {side} | " + " | ".join(cells) + " |")
    for name, values in ratio_rows.items():
        if values is not None:
            lines.append(f"| {name} | " + " | ".join(f"{values[level]:.2f}x" for level in levels) + " |")
    return lines


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 16, 64], help="concurrent users (default 1 16 64)")
    parser.add_argument("--input-len", type=int, default=128)
    parser.add_argument("--output-len", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2, help="runs of each side; the median counts (default 2)")
    parser.add_argument("--llama-server", help="llama.cpp's llama-server binary (or its folder)")
    parser.add_argument("--vllm", action="store_true", help="also run vLLM's CPU build (slow to start)")
    parser.add_argument(
        "--disaggregated", action="store_true", help="also serve with --disaggregated (prefill and decode workers)"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 and 4 users, 32->16 tokens, one round")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    if args.quick:
        args.levels, args.input_len, args.output_len, args.rounds = [1, 4], 32, 16, 1
    return args


def choose_sides(args: argparse.Namespace, gguf: Path) -> tuple[dict[str, ServerCommand | None], list[str]]:
    sides: dict[str, ServerCommand | None] = {"offline": None, "served": sagellm_command(ephemeral_port())}
    notes: list[str] = []
    if args.disaggregated:
        sides["disaggregated"] = sagellm_command(ephemeral_port(), ["--disaggregated"])
    if args.llama_server:
        os.environ[LLAMA_SERVER_ENV] = args.llama_server
    for kind in ("llama-server", "vllm") if args.vllm else ("llama-server",):
        try:
            command = peer_command(kind, gguf, max(args.levels), THREADS)
        except NotSupportedError as exc:
            notes.append(f"{kind} left out: {exc}")
            continue
        sides[kind] = command
        notes.append(f"{kind}: {' '.join(command.argv)}")
    return sides, notes


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    gguf = resolve_model_path(None)
    sides, notes = choose_sides(args, gguf)
    started = time.perf_counter()
    rounds = []
    for index in range(args.rounds):
        print(f"round {index + 1}/{args.rounds}", file=sys.stderr, flush=True)
        rounds.append(run_round(args, sides))
    table = median_of(rounds)
    report = {
        "shape": f"{args.input_len}->{args.output_len} tokens, greedy, EOS ignored, closed loop",
        "cpu": cpu_model_name(),
        "dtype": dtype_name(cpu_dtype()),
        "rounds": args.rounds,
        "levels": args.levels,
        "median": table,
        "all_rounds": rounds,
        "ratios": {
            "served / offline": ratios(table, "served", "offline"),
            "served / llama-server": ratios(table, "served", "llama-server"),
            "served / vllm": ratios(table, "served", "vllm"),
            "disaggregated / served": ratios(table, "disaggregated", "served"),
            "served / roof": ratios(table, "served", "roof"),
            "offline / roof": ratios(table, "offline", "roof"),
        },
        "notes": notes,
        "elapsed_s": round(time.perf_counter() - started, 1),
    }
    write_json_and_markdown(report, markdown(report), args.out, "serving_overhead")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
