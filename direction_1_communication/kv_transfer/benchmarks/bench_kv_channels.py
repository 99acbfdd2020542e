"""Benchmark the shm and tcp KV transfer channels side by side: bandwidth and latency percentiles.

    python benchmarks/bench_kv_channels.py [--quick] [--out DIR] [--threads N]

Same KV layout as bench_kv_transfer.py (SmolLM2-135M: 30 layers, 3 KV
heads, head dim 64, block 16, bf16: 360 KiB per block), scattered source
ids. For each channel (``shm``; ``tcp`` over the loopback, 127.0.0.1) and
each size, two measurements:

* ``1 process``: one transfer end to end through the public API, sender
  and receiver in one process: ``transfer`` -> ``receive`` -> ``accept`` ->
  the handle completes.
* ``2 processes``: the receiver is a spawned process accepting as transfers
  arrive; time from ``transfer`` to the handle completing (what a prefill
  worker waits before its blocks count as delivered).

GB/s from the median; latency p50 and p99 (nearest rank: with 30 rounds,
p99 is the slowest round). The rounds alternate between channels, so a
burst of load from another process does not land on one of them only.

Writes ``bench_kv_channels.json`` and ``bench_kv_channels.md`` to ``--out`` (default benchmarks/results/).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import platform
import statistics
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from sagellm.kv_transfer import SharedMemoryKVChannel, TcpKVChannel

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_kv_transfer import BLOCK, DIM, HEADS, LAYERS, POOL_BLOCKS, make_kv, scattered_ids, timed_rounds  # noqa: E402

KINDS = ("shm", "tcp")
Channel = SharedMemoryKVChannel | TcpKVChannel


def open_channel(kind: str, kv: Any, namespace: str, role: str) -> Channel:
    """A channel of ``kind`` with room for the largest transfer; tcp on a free loopback port."""
    if kind == "shm":
        return SharedMemoryKVChannel(kv, f"{role}-{uuid.uuid4().hex[:6]}", namespace=namespace, staging_mb=512)
    return TcpKVChannel(kv, "127.0.0.1:0", staging_mb=512)


def round_trip(src: Channel, dst: Channel, n: int) -> Callable[[], None]:
    ids = scattered_ids(n, POOL_BLOCKS)
    dst_ids = scattered_ids(n, POOL_BLOCKS, offset=3)

    def once() -> None:
        handle = src.transfer(ids, dst.node)
        incoming = dst.receive(timeout=30)
        assert incoming is not None
        incoming.accept(dst_ids)
        handle.wait(30)

    return once


def receiver_process(kind: str, namespace: str, ready: Any, stop: Any) -> None:
    torch.set_num_threads(1)
    with open_channel(kind, make_kv(POOL_BLOCKS), namespace, "recv") as ch:
        ready.put(ch.node)
        while stop.empty():
            incoming = ch.receive(timeout=0.1)
            if incoming is not None:
                incoming.accept(scattered_ids(incoming.num_blocks, POOL_BLOCKS, offset=3))


def bench_two_process(
    sources: dict[str, Channel], namespace: str, sizes: list[int], repeats: int
) -> dict[str, dict[int, list[float]]]:
    """Per channel kind, per size: seconds from ``transfer`` to the handle completing, receiver in a child."""
    ctx = mp.get_context("spawn")
    ready, stop = ctx.Queue(), ctx.Queue()
    children = [ctx.Process(target=receiver_process, args=(k, namespace, ready, stop), daemon=True) for k in KINDS]
    targets: dict[str, str] = {}
    try:
        for kind, child in zip(KINDS, children, strict=True):
            child.start()
            targets[kind] = ready.get(timeout=120)
        out: dict[str, dict[int, list[float]]] = {kind: {} for kind in KINDS}
        for n in sizes:
            ids = scattered_ids(n, POOL_BLOCKS)
            fns = {kind: _send_and_wait(sources[kind], targets[kind], ids) for kind in KINDS}
            for kind, seconds in timed_rounds(fns, repeats).items():
                out[kind][n] = seconds
        return out
    finally:
        for _ in children:
            stop.put(True)
        for child in children:
            child.join(30)
            if child.is_alive():
                child.kill()


def _send_and_wait(src: Channel, target: str, ids: list[int]) -> Callable[[], None]:
    def once() -> None:
        src.transfer(ids, target).wait(30)

    return once


def percentile(samples: list[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation: with few rounds, p99 is the slowest one)."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def summarise(seconds: list[float], nbytes: int) -> dict[str, float]:
    median = statistics.median(seconds)
    return {
        "gbps": nbytes / median / 1e9,
        "p50_ms": percentile(seconds, 50) * 1e3,
        "p99_ms": percentile(seconds, 99) * 1e3,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smoke-test size (a few seconds)")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="output directory")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: as each worker of the PD engine)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    sizes = [1, 16, 64] if args.quick else [1, 4, 16, 64, 256]
    repeats = 5 if args.quick else 30
    namespace = f"bench-{uuid.uuid4().hex[:6]}"
    rows: list[dict[str, Any]] = []
    sources = {kind: open_channel(kind, make_kv(POOL_BLOCKS), namespace, "src") for kind in KINDS}
    sinks = {kind: open_channel(kind, make_kv(POOL_BLOCKS), namespace, "dst") for kind in KINDS}
    try:
        bytes_per_block = sources["shm"].geometry.bytes_per_block
        for n in sizes:
            nbytes = n * bytes_per_block
            fns = {kind: round_trip(sources[kind], sinks[kind], n) for kind in KINDS}
            row: dict[str, Any] = {"blocks": n, "bytes": nbytes}
            for kind, seconds in timed_rounds(fns, repeats).items():
                row[kind] = {"one_process": summarise(seconds, nbytes)}
            rows.append(row)
        for kind, per_size in bench_two_process(sources, namespace, sizes, repeats).items():
            for n, seconds in per_size.items():
                row = next(r for r in rows if r["blocks"] == n)
                row[kind]["two_process"] = summarise(seconds, row["bytes"])
    finally:
        for ch in [*sources.values(), *sinks.values()]:
            ch.close()
    result = {
        "benchmark": "kv_channels",
        "quick": args.quick,
        "repeats": repeats,
        "layout": {"layers": LAYERS, "kv_heads": HEADS, "head_dim": DIM, "block_size": BLOCK, "dtype": "bfloat16"},
        "bytes_per_block": bytes_per_block,
        "torch_threads": torch.get_num_threads(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "machine": platform.machine(),
        "cpu": _cpu_name(),
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_kv_channels.json").write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(rows)
    (args.out / "bench_kv_channels.md").write_text(table)
    print(table)
    return 0


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| blocks | MiB | channel | 1 process GB/s | p50 ms | p99 ms | 2 processes GB/s | p50 ms | p99 ms |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        for kind in KINDS:
            one, two = r[kind]["one_process"], r[kind].get("two_process")
            cells = f"{two['gbps']:.2f} | {two['p50_ms']:.2f} | {two['p99_ms']:.2f}" if two else "- | - | -"
            lines.append(
                f"| {r['blocks']} | {r['bytes'] / 2**20:.2f} | {kind} | {one['gbps']:.2f} | {one['p50_ms']:.2f} "
                f"| {one['p99_ms']:.2f} | {cells} |"
            )
    return "\n".join(lines) + "\n"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


if __name__ == "__main__":
    raise SystemExit(main())
