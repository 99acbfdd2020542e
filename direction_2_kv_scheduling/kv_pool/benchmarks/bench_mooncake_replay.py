"""Benchmark PagedKVPool utilisation and fragmentation on a Mooncake trace replay.

    python benchmarks/bench_mooncake_replay.py [--quick] [--out DIR] [--trace JSONL]

Mooncake replay (``hash_ids`` = the prompt's 512-token blocks): each
request allocates its blocks at arrival (FIFO; it waits while they do not
fit) and frees them at completion (prefill + decode time from a simple
service model). Time-weighted utilisation and internal fragmentation
while requests are waiting, i.e. while the pool is under pressure.
Migration bandwidth is in ``bench_migration.py``.

Writes ``bench_mooncake_replay.json`` and ``.md`` to ``--out`` (default benchmarks/results/).
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import platform
import statistics
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sagellm.core.errors import OutOfBlocksError
from sagellm.core.types import KVLayout
from sagellm.kv_pool import PagedKVPool

HERE = Path(__file__).resolve().parent
DEFAULT_TRACE = HERE.parents[2] / ".." / "shared" / "data" / "traces" / "mooncake_synthetic_trace.jsonl"
MOONCAKE_BLOCK = 512  # tokens per hash_id in the Mooncake traces
PREFILL_TOKENS_PER_S = 10_000.0  # service model: prefill speed per request ...
TPOT_S = 0.03  # ... and time per output token


# ---- Mooncake replay ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TraceRequest:
    arrival_s: float
    input_length: int
    output_length: int
    prompt_blocks: int  # len(hash_ids)

    @property
    def num_tokens(self) -> int:
        return self.input_length + self.output_length

    @property
    def service_s(self) -> float:
        return self.input_length / PREFILL_TOKENS_PER_S + self.output_length * TPOT_S


def load_trace(path: Path, limit: int | None) -> list[TraceRequest]:
    requests = []
    with path.open() as handle:
        for line in handle:
            row = json.loads(line)
            requests.append(
                TraceRequest(row["timestamp"] / 1e3, row["input_length"], row["output_length"], len(row["hash_ids"]))
            )
            if limit and len(requests) == limit:
                break
    return requests


@dataclass(slots=True)
class Accumulator:
    """Time-weighted sums of utilisation and fragmentation, split by whether requests were waiting."""

    seconds: float = 0.0
    utilisation: float = 0.0
    fragmentation: float = 0.0

    def add(self, dt: float, pool: PagedKVPool) -> None:
        self.seconds += dt
        self.utilisation += dt * pool.get_utilization()
        self.fragmentation += dt * pool.get_fragmentation()

    def means(self) -> tuple[float | None, float | None]:
        if self.seconds == 0:
            return None, None
        return round(self.utilisation / self.seconds, 4), round(self.fragmentation / self.seconds, 4)


def replay(requests: list[TraceRequest], num_blocks: int) -> dict[str, Any]:
    """Discrete-event FIFO replay; the pool's own allocate_for_sequence / release_sequence do the work."""
    layout = KVLayout(num_layers=1, num_kv_heads=1, head_dim=1, block_size=MOONCAKE_BLOCK, num_blocks=num_blocks)
    pool = PagedKVPool(layout)
    pressure, calm = Accumulator(), Accumulator()
    waiting: deque[int] = deque()
    running: list[tuple[float, int]] = []  # (completion time, request index)
    arrivals = deque(sorted(range(len(requests)), key=lambda i: requests[i].arrival_s))
    now, too_big, waits = 0.0, 0, []
    while arrivals or running or waiting:
        next_arrival = requests[arrivals[0]].arrival_s if arrivals else float("inf")
        next_done = running[0][0] if running else float("inf")
        event = min(next_arrival, next_done)
        (pressure if waiting else calm).add(event - now, pool)
        now = event
        if next_done <= next_arrival:
            _, index = heapq.heappop(running)
            pool.release_sequence(index)
        else:
            index = arrivals.popleft()
            if -(-requests[index].num_tokens // MOONCAKE_BLOCK) > num_blocks:
                too_big += 1  # could never fit: rejected, as an engine would
            else:
                waiting.append(index)
        while waiting:  # strict FIFO: the head waits for room, nobody overtakes it
            head = requests[waiting[0]]
            try:
                pool.allocate_for_sequence(waiting[0], head.num_tokens)
            except OutOfBlocksError:
                break
            waits.append(now - head.arrival_s)
            heapq.heappush(running, (now + head.service_s, waiting.popleft()))
    util_pressure, frag_pressure = pressure.means()
    util_calm, frag_calm = calm.means()
    return {
        "pool_blocks": num_blocks,
        "pool_tokens": num_blocks * MOONCAKE_BLOCK,
        "rejected_too_big": too_big,
        "share_of_time_under_pressure": round(pressure.seconds / (pressure.seconds + calm.seconds), 4),
        "mean_utilization_under_pressure": util_pressure,
        "mean_fragmentation_under_pressure": frag_pressure,
        "mean_utilization_otherwise": util_calm,
        "mean_fragmentation_otherwise": frag_calm,
        "mean_wait_s": round(statistics.fmean(waits), 2) if waits else None,
    }


def bench_mooncake(path: Path, quick: bool) -> dict[str, Any]:
    requests = load_trace(path, 400 if quick else None)
    sizes = (512,) if quick else (512, 1024, 2048)
    prompt_blocks = sum(r.prompt_blocks for r in requests)
    return {
        "trace": path.name,
        "num_requests": len(requests),
        "mean_input_tokens": round(statistics.fmean(r.input_length for r in requests), 1),
        "mean_output_tokens": round(statistics.fmean(r.output_length for r in requests), 1),
        "mean_prompt_blocks": round(prompt_blocks / len(requests), 2),
        "block_size": MOONCAKE_BLOCK,
        "service_model": f"input / {PREFILL_TOKENS_PER_S:.0f} tok/s + output x {TPOT_S * 1e3:.0f} ms",
        "runs": [replay(requests, size) for size in sizes],
    }


# ---- report ------------------------------------------------------------------------


def to_markdown(results: dict[str, Any]) -> str:
    lines = [f"# kv_pool Mooncake replay ({'quick' if results['quick'] else 'full'})", "", f"`{results['machine']}`"]
    mooncake = results.get("mooncake")
    if mooncake:
        lines += [
            "",
            f"## Mooncake replay: {mooncake['trace']} ({mooncake['num_requests']:,} requests, "
            f"mean {mooncake['mean_input_tokens']} in / {mooncake['mean_output_tokens']} out tokens, "
            f"{mooncake['mean_prompt_blocks']} prompt blocks of {mooncake['block_size']})",
            "",
            f"Service model: {mooncake['service_model']}; strict FIFO admission.",
            "",
            "| pool blocks | time under pressure | utilisation under pressure (target >= 0.90) "
            "| fragmentation under pressure (target < 0.10) | utilisation otherwise | mean wait s | rejected |",
            "|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for run in mooncake["runs"]:
            lines.append(
                f"| {run['pool_blocks']:,} | {run['share_of_time_under_pressure']:.1%} "
                f"| {run['mean_utilization_under_pressure']} | {run['mean_fragmentation_under_pressure']} "
                f"| {run['mean_utilization_otherwise']} | {run['mean_wait_s']} | {run['rejected_too_big']} |"
            )
    else:
        lines += ["", "Mooncake replay skipped: trace file not found (pass --trace)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run in a few seconds (CI)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--trace", type=Path, default=DEFAULT_TRACE, help="Mooncake trace (JSON lines with hash_ids)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    # Same thread count for pool and peer; on a loaded 2-core host extra OpenMP threads add noise, not speed.
    torch.set_num_threads(1)
    results: dict[str, Any] = {
        "quick": args.quick,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"{torch.get_num_threads()} torch thread(s), python {platform.python_version()}, torch {torch.__version__}",
        "mooncake": bench_mooncake(args.trace, args.quick) if args.trace.is_file() else None,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_mooncake_replay.json").write_text(json.dumps(results, indent=2) + "\n")
    markdown = to_markdown(results)
    (args.out / "bench_mooncake_replay.md").write_text(markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
