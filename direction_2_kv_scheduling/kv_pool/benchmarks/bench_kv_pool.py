"""Benchmark PagedKVPool: allocator speed, copy-on-write, memory, fragmentation.

    python benchmarks/bench_kv_pool.py [--quick] [--out DIR] [--trace CSV]

Sections, each against a simple peer measured in the same run:

1. allocate/free us per call (1 and 16 blocks) at 100K blocks with half the
   pool held by long-lived sequences, vs a list allocator (``list.remove`` on
   free) and a set + dict ref-count allocator;
2. copy_on_write us per call on a SmolLM2-135M-like layout (30 layers,
   3 kv heads, head_dim 64, block 16) vs copying 60 separate per-layer K/V
   tensors (what a pool without the single allocation would do);
3. pool memory for that layout (bytes per block/token, blocks per GiB,
   measured tensor bytes, Python bookkeeping per block);
4. utilisation and internal fragmentation replaying the Azure LLM 2023 code
   trace (if the shared data is present) vs reserving max_model_len per request.

Writes ``bench_kv_pool.json`` and ``bench_kv_pool.md`` to ``--out`` (default benchmarks/results/).
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import statistics
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sagellm.core.errors import OutOfBlocksError
from sagellm.core.types import KVLayout
from sagellm.kv_pool import BlockAllocator, PagedKVPool, blocks_for_tokens, bytes_per_block, num_blocks_for_memory

HERE = Path(__file__).resolve().parent
DEFAULT_TRACE = HERE.parents[2] / ".." / "shared" / "data" / "traces" / "azure_llm_2023_code.csv"
SMOLLM2 = {"num_layers": 30, "num_kv_heads": 3, "head_dim": 64, "block_size": 16}
ALLOC_POOL_BLOCKS = 100_000


def smollm2_layout(num_blocks: int, dtype: str) -> KVLayout:
    return KVLayout(num_layers=30, num_kv_heads=3, head_dim=64, block_size=16, num_blocks=num_blocks, dtype=dtype)


# ---- peers ---------------------------------------------------------------


class ListAllocator:
    """Naive peer: free ids in a list, used ids in a list, ``list.remove`` on free (no ref counts)."""

    def __init__(self, num_blocks: int) -> None:
        self.free_ids = list(range(num_blocks))
        self.used: list[int] = []

    def allocate(self, num_blocks: int) -> list[int]:
        if num_blocks > len(self.free_ids):
            raise OutOfBlocksError("list peer is out of blocks")
        ids = self.free_ids[:num_blocks]
        del self.free_ids[:num_blocks]
        self.used.extend(ids)
        return ids

    def free(self, block_ids: Sequence[int]) -> None:
        for block_id in block_ids:
            self.used.remove(block_id)  # ValueError on double free
            self.free_ids.append(block_id)


class SetAllocator:
    """Simple peer: a set of free ids and a dict of ref counts (no metadata, no timestamps)."""

    def __init__(self, num_blocks: int) -> None:
        self.free_ids = set(range(num_blocks))
        self.refs: dict[int, int] = {}

    def allocate(self, num_blocks: int) -> list[int]:
        if num_blocks > len(self.free_ids):
            raise OutOfBlocksError("set peer is out of blocks")
        ids = [self.free_ids.pop() for _ in range(num_blocks)]
        for block_id in ids:
            self.refs[block_id] = 1
        return ids

    def free(self, block_ids: Sequence[int]) -> None:
        for block_id in block_ids:
            refs = self.refs[block_id]  # KeyError on double free
            if refs == 1:
                del self.refs[block_id]
                self.free_ids.add(block_id)
            else:
                self.refs[block_id] = refs - 1


# ---- 1. allocate / free ----------------------------------------------------


@dataclass(slots=True)
class AllocTiming:
    allocate_us: float
    free_us: float


def time_allocator(
    allocate: Callable[[int], list[int]], free: Callable[[Sequence[int]], None], n: int, calls: int, rounds: int
) -> AllocTiming:
    """Median over ``rounds`` of (K allocate calls, then the K frees in allocation order)."""
    alloc_samples, free_samples = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        held = [allocate(n) for _ in range(calls)]
        mid = time.perf_counter()
        for ids in held:
            free(ids)
        end = time.perf_counter()
        alloc_samples.append((mid - start) / calls * 1e6)
        free_samples.append((end - mid) / calls * 1e6)
    return AllocTiming(statistics.median(alloc_samples), statistics.median(free_samples))


def bench_allocator(quick: bool) -> list[dict[str, Any]]:
    layout = KVLayout(num_layers=1, num_kv_heads=1, head_dim=1, block_size=16, num_blocks=ALLOC_POOL_BLOCKS)
    peers: dict[str, tuple[Any, int]] = {  # name -> (allocator, calls per round)
        "PagedKVPool": (PagedKVPool(layout), 200 if quick else 2000),
        "set+dict peer": (SetAllocator(ALLOC_POOL_BLOCKS), 200 if quick else 2000),
        "list.remove peer": (ListAllocator(ALLOC_POOL_BLOCKS), 5 if quick else 100),
    }
    rounds = 3 if quick else 7
    for allocator, _ in peers.values():  # half the pool held by long-lived sequences
        allocator.allocate(ALLOC_POOL_BLOCKS // 2)
    rows = []
    for n in (1, 16):
        timings = {name: time_allocator(a.allocate, a.free, n, calls, rounds) for name, (a, calls) in peers.items()}
        ours = timings["PagedKVPool"]
        for name, timing in timings.items():
            rows.append(
                {
                    "blocks_per_call": n,
                    "allocator": name,
                    "allocate_us": round(timing.allocate_us, 3),
                    "free_us": round(timing.free_us, 3),
                    "peer_over_pool_allocate": round(timing.allocate_us / ours.allocate_us, 2),
                    "peer_over_pool_free": round(timing.free_us / ours.free_us, 2),
                }
            )
    return rows


# ---- 2. copy-on-write ------------------------------------------------------


def bench_copy_on_write(quick: bool, dtype: str) -> dict[str, Any]:
    num_blocks = 64 if quick else 256
    iters = 50 if quick else 500
    pool = PagedKVPool(smollm2_layout(num_blocks, dtype))
    (block,) = pool.allocate(1)
    pool.kv_tensors(0)[0][block].normal_()

    def shared_cow() -> None:
        pool.retain([block])
        copy = pool.copy_on_write(block)
        pool.free([copy])

    per_layer = [torch.zeros(num_blocks, 16, 3, 64, dtype=pool.kv_tensors(0)[0].dtype) for _ in range(2 * 30)]

    def per_layer_copy() -> None:
        for tensor in per_layer:
            tensor[1].copy_(tensor[0])

    def unshared_cow() -> None:
        pool.copy_on_write(block)

    return {
        "dtype": dtype,
        "bytes_per_block": pool.layout.bytes_per_block,
        "shared_cow_us": round(_median_us(shared_cow, iters), 2),
        "per_layer_copy_peer_us": round(_median_us(per_layer_copy, iters), 2),
        "unshared_cow_us": round(_median_us(unshared_cow, iters), 3),
    }


def _median_us(fn: Callable[[], None], iters: int) -> float:
    for _ in range(min(iters, 20)):  # warm up allocator and caches
        fn()
    samples = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(iters):
            fn()
        samples.append((time.perf_counter() - start) / iters * 1e6)
    return statistics.median(samples)


# ---- 3. memory ----------------------------------------------------------------


def bench_memory(quick: bool) -> dict[str, Any]:
    budget = (64 << 20) if quick else (1 << 30)
    result: dict[str, Any] = {"layout": "SmolLM2-135M-like " + json.dumps(SMOLLM2), "budget_bytes": budget}
    for dtype in ("bfloat16", "float32", "int8"):
        per_block = bytes_per_block(**SMOLLM2, dtype=dtype)
        num_blocks = num_blocks_for_memory(budget, **SMOLLM2, dtype=dtype)
        start = time.perf_counter()
        pool = PagedKVPool(smollm2_layout(num_blocks, dtype))
        build_ms = (time.perf_counter() - start) * 1e3
        result[dtype] = {
            "bytes_per_block": per_block,
            "bytes_per_token": per_block // SMOLLM2["block_size"],
            "num_blocks_in_budget": num_blocks,
            "tokens_in_budget": num_blocks * SMOLLM2["block_size"],
            "tensor_nbytes": pool.nbytes,
            "budget_used": round(pool.nbytes / budget, 4),
            "build_ms": round(build_ms, 1),
        }
        del pool
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    allocator = BlockAllocator(10_000 if quick else ALLOC_POOL_BLOCKS, bytes_per_block=1)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    result["bookkeeping_bytes_per_block"] = round((after - before) / allocator.num_blocks, 1)
    return result


# ---- 4. trace replay ---------------------------------------------------------


def load_lengths(path: Path, limit: int | None) -> list[int]:
    with path.open(newline="") as handle:
        rows = csv.DictReader(handle)
        lengths = [int(row["ContextTokens"]) + int(row["GeneratedTokens"]) for row in rows]
    return lengths[:limit] if limit else lengths


def bench_trace(path: Path, quick: bool, max_model_len: int = 8192) -> dict[str, Any]:
    """Admit requests FIFO until the pool is full; at each full point record utilisation/fragmentation.

    Sequences grow to their final length at admission (worst case for the
    pool: all KV resident). On OutOfBlocksError the oldest sequence leaves.
    """
    lengths = [min(n, max_model_len) for n in load_lengths(path, 500 if quick else None)]
    pool = PagedKVPool(KVLayout(num_layers=1, num_kv_heads=1, head_dim=1, block_size=16, num_blocks=4096))
    live: list[int] = []
    utilisation, fragmentation = [], []
    for seq_id, num_tokens in enumerate(lengths):
        while True:
            try:
                pool.allocate_for_sequence(seq_id, num_tokens)
                live.append(seq_id)
                break
            except OutOfBlocksError:
                utilisation.append(pool.get_utilization())
                fragmentation.append(pool.get_fragmentation())
                pool.release_sequence(live.pop(0))
    total_tokens = sum(lengths)
    paged_slots = sum(blocks_for_tokens(n, 16) * 16 for n in lengths)
    return {
        "trace": path.name,
        "num_requests": len(lengths),
        "mean_tokens": round(total_tokens / len(lengths), 1),
        "pool_blocks": 4096,
        "block_size": 16,
        "full_events": len(utilisation),
        "mean_utilization_when_full": round(statistics.fmean(utilisation), 4) if utilisation else None,
        "mean_fragmentation_when_full": round(statistics.fmean(fragmentation), 4) if fragmentation else None,
        "paged_waste_overall": round(1 - total_tokens / paged_slots, 4),
        "max_len_reservation_peer_waste": round(1 - total_tokens / (len(lengths) * max_model_len), 4),
        "max_model_len": max_model_len,
    }


# ---- report ------------------------------------------------------------------


def to_markdown(results: dict[str, Any]) -> str:
    lines = [f"# kv_pool benchmark ({'quick' if results['quick'] else 'full'})", "", f"`{results['machine']}`", ""]
    lines += [
        f"## allocate / free at {ALLOC_POOL_BLOCKS:,} blocks (half held)",
        "",
        "| blocks/call | allocator | allocate us | free us | peer/pool alloc | peer/pool free |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for row in results["allocator"]:
        lines.append(
            f"| {row['blocks_per_call']} | {row['allocator']} | {row['allocate_us']} | {row['free_us']} "
            f"| {row['peer_over_pool_allocate']}x | {row['peer_over_pool_free']}x |"
        )
    lines += [
        "",
        "## copy_on_write, SmolLM2-135M-like layout (30 layers, 3 kv heads, dim 64, block 16)",
        "",
        "| dtype | bytes/block | shared CoW us | 60 per-layer copies (peer) us | unshared CoW us |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in results["copy_on_write"]:
        lines.append(
            f"| {row['dtype']} | {row['bytes_per_block']:,} | {row['shared_cow_us']} "
            f"| {row['per_layer_copy_peer_us']} | {row['unshared_cow_us']} |"
        )
    memory = results["memory"]
    lines += [
        "",
        f"## memory, SmolLM2-135M-like layout, budget {memory['budget_bytes'] / 2**20:.0f} MiB",
        "",
        "| dtype | bytes/block | bytes/token | blocks | tokens | tensor bytes | budget used | build ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for dtype in ("bfloat16", "float32", "int8"):
        m = memory[dtype]
        lines.append(
            f"| {dtype} | {m['bytes_per_block']:,} | {m['bytes_per_token']:,} | {m['num_blocks_in_budget']:,} "
            f"| {m['tokens_in_budget']:,} | {m['tensor_nbytes']:,} | {m['budget_used']:.2%} | {m['build_ms']} |"
        )
    lines += ["", f"Python bookkeeping: {memory['bookkeeping_bytes_per_block']} bytes per block.", ""]
    trace = results.get("trace")
    if trace:
        lines += [
            f"## trace replay: {trace['trace']} ({trace['num_requests']:,} requests, "
            f"mean {trace['mean_tokens']} tokens, {trace['pool_blocks']} blocks x {trace['block_size']})",
            "",
            "| metric | value |",
            "|---|---:|",
            f"| times the pool filled | {trace['full_events']} |",
            f"| mean utilisation when full | {trace['mean_utilization_when_full']} |",
            f"| mean fragmentation when full | {trace['mean_fragmentation_when_full']} |",
            f"| paged waste over all requests | {trace['paged_waste_overall']} |",
            f"| peer: reserve max_model_len={trace['max_model_len']} per request, waste | "
            f"{trace['max_len_reservation_peer_waste']} |",
            "",
        ]
    else:
        lines += ["trace replay skipped: trace file not found", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run in a few seconds (CI)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--trace", type=Path, default=DEFAULT_TRACE, help="Azure LLM trace CSV")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    # One block copy is ~0.1-1 MB: intra-op threads only add fork/join cost, and on a shared,
    # loaded host a second OpenMP thread that is descheduled turns a 40 us copy into milliseconds.
    torch.set_num_threads(1)
    results: dict[str, Any] = {
        "quick": args.quick,
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"python {platform.python_version()}, torch {torch.__version__}",
        "allocator": bench_allocator(args.quick),
        "copy_on_write": [bench_copy_on_write(args.quick, dtype) for dtype in ("bfloat16", "float32")],
        "memory": bench_memory(args.quick),
        "trace": bench_trace(args.trace, args.quick) if args.trace.is_file() else None,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_kv_pool.json").write_text(json.dumps(results, indent=2) + "\n")
    markdown = to_markdown(results)
    (args.out / "bench_kv_pool.md").write_text(markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
