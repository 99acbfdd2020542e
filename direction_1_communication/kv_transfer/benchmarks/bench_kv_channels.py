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

import math
import platform
import statistics
import uuid
from pathlib import Path
from typing import Any

import harness
import torch

from sagellm.kv_transfer import SharedMemoryKVChannel, TcpKVChannel

KINDS = ("shm", "tcp")
Channel = SharedMemoryKVChannel | TcpKVChannel


def open_channel(kind: str, kv: Any, namespace: str, role: str) -> Channel:
    """A channel of ``kind`` with room for the largest transfer; tcp on a free loopback port."""
    if kind == "shm":
        return SharedMemoryKVChannel(kv, f"{role}-{uuid.uuid4().hex[:6]}", namespace=namespace, staging_mb=512)
    return TcpKVChannel(kv, "127.0.0.1:0", staging_mb=512)


def receiver_process(kind: str, namespace: str, ready: Any, stop: Any) -> None:
    torch.set_num_threads(1)
    with open_channel(kind, harness.make_kv(harness.POOL_BLOCKS), namespace, "recv") as ch:
        harness.serve(ch, ready, stop)


def bench_two_process(
    sources: dict[str, Channel], namespace: str, sizes: list[int], repeats: int
) -> dict[str, dict[int, list[float]]]:
    """Per channel kind, per size: seconds from ``transfer`` to the handle completing, receiver in a child."""
    with harness.spawned_receivers(receiver_process, [(kind, namespace) for kind in KINDS]) as nodes:
        targets = dict(zip(KINDS, nodes, strict=True))
        out: dict[str, dict[int, list[float]]] = {kind: {} for kind in KINDS}
        for n in sizes:
            ids = harness.scattered_ids(n, harness.POOL_BLOCKS)
            fns = {kind: harness.send_and_wait(sources[kind], targets[kind], ids) for kind in KINDS}
            for kind, seconds in harness.timed_rounds(fns, repeats).items():
                out[kind][n] = seconds
        return out


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
    args = harness.parse_args(__doc__, argv)
    sizes, repeats = harness.sizes_and_repeats(args.quick)
    namespace = f"bench-{uuid.uuid4().hex[:6]}"
    rows: list[dict[str, Any]] = []
    sources = {kind: open_channel(kind, harness.make_kv(harness.POOL_BLOCKS), namespace, "src") for kind in KINDS}
    sinks = {kind: open_channel(kind, harness.make_kv(harness.POOL_BLOCKS), namespace, "dst") for kind in KINDS}
    try:
        bytes_per_block = sources["shm"].geometry.bytes_per_block
        for n in sizes:
            nbytes = n * bytes_per_block
            fns = {kind: harness.round_trip(sources[kind], sinks[kind], n) for kind in KINDS}
            row: dict[str, Any] = {"blocks": n, "bytes": nbytes}
            for kind, seconds in harness.timed_rounds(fns, repeats).items():
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
        **harness.run_record("kv_channels", args.quick, repeats, bytes_per_block),
        "cpu": _cpu_name(),
        "rows": rows,
    }
    harness.write_results(args.out, "bench_kv_channels", result, markdown(rows))
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
