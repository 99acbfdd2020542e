"""Benchmark SharedMemoryKVChannel bandwidth against a plain tensor copy of the same bytes.

    python benchmarks/bench_kv_transfer.py [--quick] [--out DIR]

KV layout of SmolLM2-135M (30 layers, 3 KV heads, head dim 64, block size
16, bfloat16: 360 KiB per block), scattered source block ids, transfers of
1 to 256 blocks. Measured per size, median of the repeats:

* ``channel``: one transfer end to end through the public API in one
  process: ``transfer`` (gather into shared memory, post) -> ``receive`` ->
  ``accept`` (scatter into the receiver's blocks, acknowledge) -> the
  handle completes. Bytes / that time.
* ``channel, 2 processes`` (full run, and the largest size in --quick): the
  receiver is a spawned process that accepts as transfers arrive; time
  from ``transfer`` to the handle completing, so it includes the
  cross-process wake-ups.
* ``gather+scatter``: the same two copies with no shared memory and no
  messages (``index_select`` into a staging tensor, ``index_copy_`` out):
  what the channel's copies cost by themselves.
* ``plain copy`` (the peer): ONE ``Tensor.copy_`` of the same number of
  bytes between contiguous tensors. The channel copies twice (the sender's
  blocks are free as soon as ``transfer`` returns), so its ceiling is half
  the plain copy's bandwidth.

One torch thread by default (``--threads``), as each worker of the
disaggregated engine has; medians, with the best round in parentheses
(another process's load lands on single rounds).

Writes ``bench_kv_transfer.json`` and ``bench_kv_transfer.md`` to ``--out`` (default benchmarks/results/).
"""

from __future__ import annotations

import statistics
import uuid
from collections.abc import Callable
from typing import Any

import torch
from harness import (
    BLOCK,
    DIM,
    DTYPE,
    HEADS,
    LAYERS,
    POOL_BLOCKS,
    make_kv,
    parse_args,
    round_trip,
    run_record,
    scattered_ids,
    send_and_wait,
    serve,
    sizes_and_repeats,
    spawned_receivers,
    timed_rounds,
    write_results,
)

from sagellm.kv_transfer import SharedMemoryKVChannel


def gather_scatter_once(
    src: list[tuple[torch.Tensor, torch.Tensor]], dst: list[tuple[torch.Tensor, torch.Tensor]], n: int
) -> Callable[[], None]:
    ids = torch.tensor(scattered_ids(n, POOL_BLOCKS))
    dst_ids = torch.tensor(scattered_ids(n, POOL_BLOCKS, offset=3))
    staging = torch.empty(LAYERS, 2, n, BLOCK, HEADS, DIM, dtype=DTYPE)

    def once() -> None:
        for layer, (key, value) in enumerate(src):
            torch.index_select(key, 0, ids, out=staging[layer, 0])
            torch.index_select(value, 0, ids, out=staging[layer, 1])
        for layer, (key, value) in enumerate(dst):
            key.index_copy_(0, dst_ids, staging[layer, 0])
            value.index_copy_(0, dst_ids, staging[layer, 1])

    return once


def plain_copy_once(nbytes: int) -> Callable[[], None]:
    a = torch.empty(nbytes // 2, dtype=DTYPE).normal_()
    b = torch.empty_like(a)

    def once() -> None:
        b.copy_(a)

    return once


def receiver_process(namespace: str, node: str, ready: Any, stop: Any) -> None:
    torch.set_num_threads(1)
    with SharedMemoryKVChannel(make_kv(POOL_BLOCKS), node, namespace=namespace) as ch:
        serve(ch, ready, stop)


def bench_two_process(
    src: SharedMemoryKVChannel, namespace: str, sizes: list[int], repeats: int
) -> dict[int, list[float]]:
    node = f"bench-recv-{uuid.uuid4().hex[:6]}"
    with spawned_receivers(receiver_process, [(namespace, node)]):
        out = {}
        for n in sizes:
            once = send_and_wait(src, node, scattered_ids(n, POOL_BLOCKS))
            out[n] = timed_rounds({"two_process": once}, repeats)["two_process"]
        return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, argv)
    sizes, repeats = sizes_and_repeats(args.quick)
    two_process_sizes = sizes[-1:] if args.quick else sizes
    namespace = f"bench-{uuid.uuid4().hex[:6]}"
    src_kv, dst_kv = make_kv(POOL_BLOCKS), make_kv(POOL_BLOCKS)
    rows: list[dict[str, Any]] = []
    with (
        SharedMemoryKVChannel(src_kv, "bench-src", namespace=namespace) as src,
        SharedMemoryKVChannel(dst_kv, "bench-dst", namespace=namespace) as dst,
    ):
        bytes_per_block = src.geometry.bytes_per_block
        for n in sizes:
            nbytes = n * bytes_per_block
            samples = timed_rounds(
                {
                    "channel": round_trip(src, dst, n),
                    "gather_scatter": gather_scatter_once(src_kv, dst_kv, n),
                    "plain_copy": plain_copy_once(nbytes),
                },
                repeats,
            )
            row: dict[str, Any] = {"blocks": n, "bytes": nbytes}
            for name, seconds in samples.items():
                row[f"{name}_median_ms"] = statistics.median(seconds) * 1e3
                row[f"{name}_gbps"] = nbytes / statistics.median(seconds) / 1e9
                row[f"{name}_best_gbps"] = nbytes / min(seconds) / 1e9
            row["ratio_vs_plain_copy"] = row["channel_gbps"] / row["plain_copy_gbps"]
            rows.append(row)
        for n, seconds in bench_two_process(src, namespace, two_process_sizes, repeats).items():
            row = next(r for r in rows if r["blocks"] == n)
            row["two_process_median_ms"] = statistics.median(seconds) * 1e3
            row["two_process_gbps"] = row["bytes"] / statistics.median(seconds) / 1e9
            row["two_process_best_gbps"] = row["bytes"] / min(seconds) / 1e9
    result = {**run_record("kv_transfer", args.quick, repeats, bytes_per_block), "rows": rows}
    lines = [
        "| blocks | MiB | channel ms | channel GB/s (best) | 2 processes GB/s (best) | gather+scatter GB/s "
        "| plain copy GB/s (best) | channel / plain |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        two = f"{r['two_process_gbps']:.2f} ({r['two_process_best_gbps']:.2f})" if "two_process_gbps" in r else "-"
        lines.append(
            f"| {r['blocks']} | {r['bytes'] / 2**20:.2f} | {r['channel_median_ms']:.2f} "
            f"| {r['channel_gbps']:.2f} ({r['channel_best_gbps']:.2f}) | {two} | {r['gather_scatter_gbps']:.2f} "
            f"| {r['plain_copy_gbps']:.2f} ({r['plain_copy_best_gbps']:.2f}) | {r['ratio_vs_plain_copy']:.2f} |"
        )
    write_results(args.out, "bench_kv_transfer", result, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
