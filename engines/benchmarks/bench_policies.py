"""Effect of each pluggable choice on hit rate, TTFT p99 and throughput, side by side with the defaults.

    python engines/benchmarks/bench_policies.py [--quick] [--out DIR] [--workloads mt-bench,mooncake]
                                                [--only eviction,scheduler]

For every workload, runs ``sagellm bench`` (in-process engine, its own
subprocess each time, same requests, same small KV pool so that eviction
and preemption really happen) once per choice, changing ONE axis at a time
from the defaults (hash_chain prefix index, LRU eviction, FIFO scheduler,
device-only KV, auto cache dtype): every installed prefix index, eviction
policy (+ the learned one with the ``online`` lifetime predictor),
scheduler, and — where the engine has the flags — KV tiers and the int8
KV cache. The defaults run first and last: the spread between the two
shows how much of a difference is noise on a shared machine.

Writes ``bench_policies.json`` and ``bench_policies.md`` into ``--out``
(default ``engines/benchmarks/results/``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sagellm.core import registry

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
DEFAULTS = {"prefix_index": "hash_chain", "eviction_policy": "lru", "ir_builder": "fifo"}


@dataclass(frozen=True)
class Choice:
    axis: str
    name: str
    flags: tuple[str, ...]


@dataclass(frozen=True)
class Workload:
    name: str
    flags: tuple[str, ...]


def workloads(quick: bool) -> list[Workload]:
    """Small pools on purpose: with room for everything, every policy looks the same."""
    if quick:
        return [
            Workload(
                "mt-bench",
                (
                    "--workload",
                    "mt-bench",
                    "--num-requests",
                    "6",
                    "--concurrency",
                    "6",
                    "--output-len",
                    "16",
                    "--num-blocks",
                    "96",
                ),
            ),
            Workload(
                "mooncake",
                (
                    "--workload",
                    "mooncake",
                    "--num-requests",
                    "16",
                    "--length-scale",
                    "0.02",
                    "--time-scale",
                    "0.02",
                    "--num-blocks",
                    "160",
                ),
            ),
        ]
    return [
        Workload(
            "mt-bench",
            (
                "--workload",
                "mt-bench",
                "--num-requests",
                "24",
                "--concurrency",
                "8",
                "--output-len",
                "48",
                "--num-blocks",
                "192",
            ),
        ),
        Workload(
            "mooncake",
            (
                "--workload",
                "mooncake",
                "--num-requests",
                "60",
                "--length-scale",
                "0.03",
                "--time-scale",
                "0.05",
                "--num-blocks",
                "320",
            ),
        ),
    ]


def choices(bench_help: str) -> list[Choice]:
    """One axis changed at a time; only what is installed (and what the engine has flags for)."""
    found = [Choice("default", "defaults", ())]
    for axis, flag in (
        ("prefix_index", "--prefix-cache"),
        ("eviction_policy", "--eviction"),
        ("ir_builder", "--scheduler"),
    ):
        for name in sorted(registry.available(axis)):
            if name != DEFAULTS[axis]:
                found.append(Choice(axis, name, (flag, name)))
    if "learned" in registry.available("eviction_policy") and "online" in registry.available("lifetime_predictor"):
        found.append(
            Choice(
                "eviction_policy",
                "learned + online predictor",
                ("--eviction", "learned", "--lifetime-predictor", "online"),
            )
        )
    if "--kv-tiers" in bench_help:
        found.append(Choice("kv_tiers", "device,host", ("--kv-tiers", "device,host")))
    if "--kv-cache-dtype" in bench_help:
        found.append(Choice("kv_cache_dtype", "int8", ("--kv-cache-dtype", "int8")))
    found.append(Choice("default", "defaults (again)", ()))
    return found


def run_one(workload: Workload, choice: Choice, threads: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as out:
        command = [
            sys.executable,
            "-m",
            "sagellm.engines.cli.main",
            "bench",
            *workload.flags,
            *choice.flags,
            "--threads",
            str(threads),
            "--no-progress",
            "--out",
            out,
        ]
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            return {"error": (done.stderr or done.stdout).strip().splitlines()[-1:], "wall_s": seconds}
        summary = json.loads((Path(out) / "bench.json").read_text())["summary"]
    keep = (
        "avg_prefix_hit_rate",
        "p50_ttft_ms",
        "p99_ttft_ms",
        "p99_tpot_ms",
        "output_throughput_tps",
        "preemptions",
        "evict_count",
        "num_completed",
        "num_errors",
    )
    return {key: summary.get(key) for key in keep} | {"wall_s": round(seconds, 1)}


def markdown(workload: str, rows: list[dict[str, Any]]) -> str:
    base = rows[0]
    lines = [
        f"**{workload}** (`{' '.join(rows[0]['workload_flags'])}`)",
        "",
        "| axis | choice | prefix hit | TTFT p50 ms | TTFT p99 ms | TPOT p99 ms | out tok/s | x defaults | "
        "preempt | evicted blocks |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['axis']} | {row['choice']} | error: {' '.join(row['error'])} ||||||||")
            continue
        ratio = row["output_throughput_tps"] / base["output_throughput_tps"] if base.get("output_throughput_tps") else 0
        lines.append(
            f"| {row['axis']} | {row['choice']} | {row['avg_prefix_hit_rate']:.3f} | {row['p50_ttft_ms']:,.0f} "
            f"| {row['p99_ttft_ms']:,.0f} | {row['p99_tpot_ms']:,.0f} | {row['output_throughput_tps']:.1f} "
            f"| {ratio:.2f} | {row['preemptions']} | {row['evict_count']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="tiny runs (a few minutes in all)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    parser.add_argument("--workloads", default="mt-bench,mooncake", help="comma list of mt-bench, mooncake")
    parser.add_argument("--only", default="", help="comma list of axes to run (default: all) besides the defaults")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per run (default 2)")
    args = parser.parse_args(argv)
    bench_help = subprocess.run(
        [sys.executable, "-m", "sagellm.engines.cli.main", "bench", "--help"], capture_output=True, text=True
    ).stdout
    axes = {a for a in args.only.split(",") if a}
    picked = [c for c in choices(bench_help) if not axes or c.axis in axes | {"default"}]
    wanted = set(args.workloads.split(","))
    results: dict[str, list[dict[str, Any]]] = {}
    tables = []
    for workload in (w for w in workloads(args.quick) if w.name in wanted):
        rows = []
        for choice in picked:
            print(f"{workload.name}: {choice.axis} = {choice.name} ...", file=sys.stderr, flush=True)
            row = {
                "axis": choice.axis,
                "choice": choice.name,
                "flags": list(choice.flags),
                "workload_flags": list(workload.flags),
            } | run_one(workload, choice, args.threads)
            rows.append(row)
        results[workload.name] = rows
        tables.append(markdown(workload.name, rows))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_policies.json").write_text(json.dumps({"quick": args.quick, "results": results}, indent=2))
    (args.out / "bench_policies.md").write_text("\n".join(tables))
    print("\n".join(tables))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
