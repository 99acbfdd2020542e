"""Benchmark the tiers of PagedKVPool: migration bandwidth, and utilisation/fragmentation on a Mooncake replay.

    python benchmarks/bench_kv_tiers.py [--quick] [--out DIR] [--trace JSONL]

1. Migration bandwidth per direction (device->host, host->device,
   host->disk, disk->host, and device<->disk) on a SmolLM2-135M-like
   bfloat16 layout, through the public API (``move_blocks(...).result()``:
   reserve, worker hand-off, copies, settle). Peer, measured in the same
   run, alternating with the pool round by round: ONE plain ``Tensor.copy_``
   of the same number of bytes between contiguous tensors on the same media
   (RAM -> RAM, RAM -> mmap file, ...). Ratio = pool GB/s (end to end) /
   plain-copy GB/s. On a CPU-only machine "device" and "host" are both RAM.
2. Mooncake replay (``hash_ids`` = the prompt's 512-token blocks): each
   request allocates its blocks at arrival (FIFO; it waits while they do not
   fit) and frees them at completion (prefill + decode time from a simple
   service model). Time-weighted utilisation and internal fragmentation
   while requests are waiting, i.e. while the pool is under pressure.

Writes ``bench_kv_tiers.json`` and ``bench_kv_tiers.md`` to ``--out`` (default benchmarks/results/).
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import platform
import statistics
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sagellm.core.errors import OutOfBlocksError
from sagellm.core.types import KVLayout, Tier
from sagellm.kv_pool import PagedKVPool, PoolOptions

HERE = Path(__file__).resolve().parent
DEFAULT_TRACE = HERE.parents[2] / ".." / "shared" / "data" / "traces" / "mooncake_synthetic_trace.jsonl"
SMOLLM2 = {"num_layers": 30, "num_kv_heads": 3, "head_dim": 64, "block_size": 16}
DIRECTIONS = [
    (Tier.DEVICE, Tier.HOST),
    (Tier.HOST, Tier.DEVICE),
    (Tier.HOST, Tier.DISK),
    (Tier.DISK, Tier.HOST),
    (Tier.DEVICE, Tier.DISK),
    (Tier.DISK, Tier.DEVICE),
]
MOONCAKE_BLOCK = 512  # tokens per hash_id in the Mooncake traces
PREFILL_TOKENS_PER_S = 10_000.0  # service model: prefill speed per request ...
TPOT_S = 0.03  # ... and time per output token


# ---- 1. migration bandwidth ---------------------------------------------------


def peer_buffers(nbytes: int, src_tier: Tier, dst_tier: Tier, directory: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Contiguous source and destination of ``nbytes`` on the same media as the two tiers (RAM or a mapped file)."""
    numel = nbytes // 2  # bfloat16

    def buffer(tier: Tier, name: str) -> torch.Tensor:
        if tier is Tier.DISK:
            path = os.path.join(directory, f"peer-{name}.bin")
            return torch.from_file(path, shared=True, size=numel, dtype=torch.bfloat16)
        return torch.empty(numel, dtype=torch.bfloat16)

    src, dst = buffer(src_tier, "src"), buffer(dst_tier, "dst")
    src.normal_()
    return src, dst


def bench_migration(quick: bool) -> list[dict[str, Any]]:
    num_blocks = 32 if quick else 256
    rounds = 3 if quick else 9
    layout = KVLayout(**SMOLLM2, num_blocks=num_blocks, dtype="bfloat16")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-kv-tiers-") as directory:
        options = PoolOptions(host_blocks=num_blocks, disk_blocks=num_blocks, disk_dir=directory, migration_workers=1)
        with PagedKVPool(layout, options) as pool:
            for src_tier, dst_tier in DIRECTIONS:
                timing = time_direction(pool, src_tier, dst_tier, directory, rounds)
                nbytes = num_blocks * pool.layout.bytes_per_block
                rows.append(
                    {
                        "direction": f"{src_tier.value}->{dst_tier.value}",
                        "blocks": num_blocks,
                        "mb": round(nbytes / 1e6, 1),
                        "pool_gb_per_s": round(timing["pool"], 2),
                        "pool_copy_only_gb_per_s": round(timing["copies"], 2),
                        "plain_copy_gb_per_s": round(timing["plain"], 2),
                        "ratio_pool_over_plain": round(timing["pool"] / timing["plain"], 3),
                    }
                )
            rows.append({"stats_migrations": [_rate_row(rate) for rate in pool.stats().migrations]})
    return rows


def time_direction(pool: PagedKVPool, src_tier: Tier, dst_tier: Tier, directory: str, rounds: int) -> dict[str, float]:
    """Median GB/s of: ``move_blocks(...).result()`` end to end, its copies alone, and the plain-copy peer.

    Pool and peer alternate round by round, so load on a shared host hits
    both alike; round 0 warms up (page faults, file blocks, worker start).
    """
    ids = pool.allocate(pool.layout.num_blocks, src_tier)
    for block in ids:
        pool.block_data(block, src_tier).normal_()
    nbytes = len(ids) * pool.layout.bytes_per_block
    peer_src, peer_dst = peer_buffers(nbytes, src_tier, dst_tier, directory)
    samples: dict[str, list[float]] = {"pool": [], "copies": [], "plain": []}
    for round_ in range(rounds + 1):
        start = time.perf_counter()
        result = pool.move_blocks(ids, src_tier, dst_tier).result()
        elapsed = time.perf_counter() - start
        ids = pool.move_blocks(result.dst_block_ids, dst_tier, src_tier).result().dst_block_ids
        start = time.perf_counter()
        peer_dst.copy_(peer_src)
        plain = time.perf_counter() - start
        if round_:
            samples["pool"].append(nbytes / elapsed / 1e9)
            samples["copies"].append(nbytes / sum(t.seconds for t in result.timings) / 1e9)
            samples["plain"].append(nbytes / plain / 1e9)
    pool.free(ids, src_tier)
    return {name: statistics.median(values) for name, values in samples.items()}


def _rate_row(rate: Any) -> dict[str, Any]:
    return {
        "direction": f"{rate.src_tier.value}->{rate.dst_tier.value}",
        "blocks": rate.num_blocks,
        "bytes": rate.num_bytes,
        "gb_per_s": round(rate.gb_per_s, 2),
    }


# ---- 2. Mooncake replay ----------------------------------------------------------


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
    lines = [f"# kv_pool tiers benchmark ({'quick' if results['quick'] else 'full'})", "", f"`{results['machine']}`"]
    rows = [row for row in results["migration"] if "direction" in row]
    lines += [
        "",
        f"## migration bandwidth, SmolLM2-135M-like bfloat16 blocks ({rows[0]['blocks']} blocks, {rows[0]['mb']} MB)",
        "",
        "| direction | pool GB/s (end to end) | pool GB/s (copies only) | plain copy GB/s | pool / plain |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['direction']} | {row['pool_gb_per_s']} | {row['pool_copy_only_gb_per_s']} "
            f"| {row['plain_copy_gb_per_s']} | {row['ratio_pool_over_plain']} |"
        )
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
        "migration": bench_migration(args.quick),
        "mooncake": bench_mooncake(args.trace, args.quick) if args.trace.is_file() else None,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_kv_tiers.json").write_text(json.dumps(results, indent=2) + "\n")
    markdown = to_markdown(results)
    (args.out / "bench_kv_tiers.md").write_text(markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
