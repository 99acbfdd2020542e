"""Benchmark the fused paged decode attention against the gather-then-attend PyTorch paths.

    python benchmarks/bench_paged_attention.py [--quick] [--out DIR] [--threads N]

SmolLM2-135M's attention shape (9 query heads, 3 KV heads, head dim 64,
16-token blocks, bf16), one decode query per sequence, block ids shuffled
across the pool as a serving engine leaves them. Per batch x context:

* ``fused``: ``paged_decode_attention`` (C++: K/V read from the blocks in place);
* ``gather + sdpa``: ``index_select`` of every sequence's blocks into a
  padded [B, L, Hkv, D] copy, then ``scaled_dot_product_attention`` with a
  padding mask and ``enable_gqa`` (what a plain PyTorch engine does);
* ``gather + block-diagonal bmm``: the same gather, then sageLLM's unfused
  bf16 decode (two batched matmuls over the gathered rows as they lie, one
  query per KV head spread block-diagonally);
* the KV bytes one layer reads, and the fused kernel's effective bandwidth.

Rows marked ``cold`` cycle through 30 separate pools (one per layer of the
model, several hundred MB in all), so every call reads its KV from DRAM as
in a serving step; the other rows reuse one pool, which stays in cache.

Sides run interleaved, medians of the rounds. Writes ``bench_paged_attention.json``
and ``.md`` to ``--out`` (default benchmarks/results/).
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from _cli import bench_main

from sagellm.kernel_fusion import load_kernels, paged_decode_attention

HEADS, KV_HEADS, HEAD_DIM, BLOCK = 9, 3, 64, 16


COLD_LAYERS = 30


def make_inputs(batch: int, context: int, layer: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(batch * 1000 + context + layer * 7919)
    blocks_each = -(-context // BLOCK)
    num_blocks = batch * blocks_each + 1
    ids = torch.randperm(num_blocks, generator=generator)[: batch * blocks_each].view(batch, blocks_each)
    shape = (num_blocks, BLOCK, KV_HEADS, HEAD_DIM)
    lengths = torch.randint(max(1, context // 2), context + 1, (batch,), generator=generator)
    lengths[0] = context
    width = blocks_each * BLOCK
    mask = torch.zeros(batch, 1, 1, width).masked_fill_(torch.arange(width) >= lengths.view(-1, 1, 1, 1), float("-inf"))
    return {
        "query": torch.randn(batch, HEADS, HEAD_DIM, generator=generator).bfloat16(),
        "keys": torch.randn(shape, generator=generator).bfloat16(),
        "values": torch.randn(shape, generator=generator).bfloat16(),
        "table": ids.contiguous(),
        "lengths": lengths,
        "mask": mask,
    }


def gather(blocks: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    batch, count = table.shape
    return blocks.index_select(0, table.reshape(-1)).view(batch, count * BLOCK, KV_HEADS, HEAD_DIM)


def gather_sdpa(x: dict[str, torch.Tensor]) -> torch.Tensor:
    keys, values = gather(x["keys"], x["table"]), gather(x["values"], x["table"])
    out = F.scaled_dot_product_attention(
        x["query"].unsqueeze(2),
        keys.transpose(1, 2).contiguous(),
        values.transpose(1, 2).contiguous(),
        attn_mask=x["mask"].to(torch.bfloat16),
        enable_gqa=True,
    )
    return out.squeeze(2)


def gather_block_diagonal(x: dict[str, torch.Tensor]) -> torch.Tensor:
    keys, values = gather(x["keys"], x["table"]), gather(x["values"], x["table"])
    query, group = x["query"], HEADS // KV_HEADS
    batch, context = keys.shape[0], keys.shape[1]
    own = torch.eye(KV_HEADS, dtype=query.dtype).view(1, KV_HEADS, 1, KV_HEADS, 1)
    spread = (query.view(batch, KV_HEADS, group, 1, HEAD_DIM) * own).view(batch, HEADS, -1)
    scores = torch.bmm(spread, keys.view(batch, context, -1).transpose(1, 2)).float() * HEAD_DIM**-0.5
    probs = torch.softmax(scores + x["mask"].view(batch, 1, context), dim=-1).to(values.dtype)
    full = torch.bmm(probs, values.view(batch, context, -1)).view(batch, KV_HEADS, group, KV_HEADS, HEAD_DIM)
    return torch.diagonal(full, dim1=1, dim2=3).permute(0, 3, 1, 2).reshape(batch, HEADS, HEAD_DIM)


def fused(x: dict[str, torch.Tensor]) -> torch.Tensor:
    return paged_decode_attention(x["query"], x["keys"], x["values"], x["table"], x["lengths"])


def timed(fn: Callable[[dict[str, torch.Tensor]], Any], inputs: list[dict[str, torch.Tensor]], repeats: int) -> float:
    """Seconds per call, cycling through ``inputs`` (one per layer for the cold rows)."""
    calls = repeats * len(inputs)
    start = time.perf_counter()
    for i in range(calls):
        fn(inputs[i % len(inputs)])
    return (time.perf_counter() - start) / calls


def case(batch: int, context: int, rounds: int, repeats: int, cold: bool = False) -> dict[str, Any]:
    inputs = [make_inputs(batch, context, layer) for layer in range(COLD_LAYERS if cold else 1)]
    x = inputs[0]
    sides = {"fused": fused, "gather_sdpa": gather_sdpa, "gather_block_diagonal": gather_block_diagonal}
    reference = gather_sdpa(x).float()
    errors = {name: float((fn(x).float() - reference).abs().max()) for name, fn in sides.items()}
    samples: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(rounds):
        for name, fn in sides.items():
            samples[name].append(timed(fn, inputs, 1 if cold else repeats))
    kv_bytes = int(x["lengths"].sum()) * KV_HEADS * HEAD_DIM * 2 * 2  # K and V, bf16
    result: dict[str, Any] = {f"{name}_us": statistics.median(s) * 1e6 for name, s in samples.items()}
    result.update(batch=batch, context=context, cold=cold, kv_bytes=kv_bytes, max_abs_diff=errors)
    result["fused_gb_s"] = kv_bytes / (result["fused_us"] * 1e-6) / 1e9
    return result


def run(quick: bool, threads: int) -> dict[str, Any]:
    torch.set_num_threads(threads)
    cases = (
        [(1, 256, False), (64, 256, False), (64, 256, True)]
        if quick
        else [
            (1, 256, False),
            (1, 2048, False),
            (16, 256, False),
            (16, 1024, False),
            (64, 256, False),
            (64, 1024, False),
            (64, 256, True),
            (64, 1024, True),
        ]
    )
    rounds, repeats = (2, 3) if quick else (5, 10)
    return {
        "benchmark": "paged_decode_attention",
        "environment": {
            "torch": torch.__version__,
            "threads": threads,
            "machine": platform.machine(),
            "compiled": load_kernels("paged_decode_attention") is not None,
        },
        "results": [case(b, c, rounds, repeats, cold) for b, c, cold in cases],
    }


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "| batch | context (max) | pools | KV read per layer | fused µs | gather+SDPA µs | gather+block-diagonal µs "
        "| x SDPA | x block-diagonal | fused GB/s |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['batch']} | {r['context']} | {'cold' if r['cold'] else 'warm'} | {r['kv_bytes'] / 2**20:.1f} MiB | {r['fused_us']:.0f} | "
            f"{r['gather_sdpa_us']:.0f} | {r['gather_block_diagonal_us']:.0f} | "
            f"{r['gather_sdpa_us'] / r['fused_us']:.2f} | {r['gather_block_diagonal_us'] / r['fused_us']:.2f} | "
            f"{r['fused_gb_s']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    return bench_main("bench_paged_attention", __doc__, run, markdown)


if __name__ == "__main__":
    raise SystemExit(main())
