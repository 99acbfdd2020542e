"""Benchmark the fused paged prefill attention against PyTorch's SDPA, per chunk, as an engine without it runs.

    python benchmarks/bench_prefill_attention.py [--quick] [--out DIR] [--threads N]

SmolLM2-135M's attention shape (9 query heads, 3 KV heads, head dim 64,
16-token blocks, bf16); a step's prefill chunks, each the last ``rows``
positions of a ``context``-token sequence whose blocks are shuffled across
the pool. Sides:

* ``fused``: ``paged_prefill_attention``, every chunk in one call, K/V read from the blocks;
* ``sdpa``: per chunk, ``scaled_dot_product_attention`` (CPU flash kernel,
  contiguous [1, H, n, D] inputs, ``enable_gqa``) — causal over the chunk's
  own K/V when it is the whole context, else over its context gathered from
  the blocks with an offset causal mask (sageLLM's unfused path).

Sides run interleaved, medians of the rounds. Writes ``bench_prefill_attention.json``
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

from sagellm.kernel_fusion import load_kernels, paged_prefill_attention

HEADS, KV_HEADS, HEAD_DIM, BLOCK = 9, 3, 64, 16
Inputs = dict[str, Any]


def make_inputs(chunks: list[tuple[int, int]]) -> Inputs:
    """``chunks``: (rows, context) per chunk; the rows are each context's last positions."""
    generator = torch.Generator().manual_seed(sum(r * 31 + c for r, c in chunks))
    per_chunk = [-(-context // BLOCK) for _, context in chunks]
    num_blocks = sum(per_chunk) + 1
    ids = torch.randperm(num_blocks, generator=generator)
    table = torch.zeros(len(chunks), max(per_chunk), dtype=torch.long)
    rows, taken, begin = [], 0, 0
    for i, ((count_rows, _), count) in enumerate(zip(chunks, per_chunk)):
        table[i, :count] = ids[taken : taken + count]
        taken += count
        rows.append([begin, begin + count_rows])
        begin += count_rows
    shape = (num_blocks, BLOCK, KV_HEADS, HEAD_DIM)
    keys = torch.randn(shape, generator=generator).bfloat16()
    values = torch.randn(shape, generator=generator).bfloat16()
    query = torch.randn(begin, HEADS, HEAD_DIM, generator=generator).bfloat16()
    return {"args": (query, keys, values, torch.tensor(rows), torch.tensor([c for _, c in chunks]), table)}


def fused(x: Inputs) -> torch.Tensor:
    return paged_prefill_attention(*x["args"])


def sdpa_per_chunk(x: Inputs) -> torch.Tensor:
    query, keys, values, rows, lengths, table = x["args"]
    out = torch.empty_like(query)
    for (begin, end), length, blocks in zip(rows.tolist(), lengths.tolist(), table):
        q = query[begin:end].transpose(0, 1).unsqueeze(0).contiguous()
        used = blocks[: -(-length // BLOCK)]
        k = keys.index_select(0, used).flatten(0, 1)[:length].transpose(0, 1).unsqueeze(0).contiguous()
        v = values.index_select(0, used).flatten(0, 1)[:length].transpose(0, 1).unsqueeze(0).contiguous()
        if length == end - begin:
            attended = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        else:
            positions = torch.arange(length - (end - begin), length).unsqueeze(1)
            mask = torch.arange(length).unsqueeze(0) <= positions
            attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
        out[begin:end] = attended[0].transpose(0, 1)
    return out


def timed(fn: Callable[[Inputs], Any], x: Inputs, repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        fn(x)
    return (time.perf_counter() - start) / repeats


def case(label: str, chunks: list[tuple[int, int]], rounds: int, repeats: int) -> dict[str, Any]:
    x = make_inputs(chunks)
    sides = {"fused": fused, "sdpa": sdpa_per_chunk}
    reference = sdpa_per_chunk(x).float()
    errors = {name: float((fn(x).float() - reference).abs().max()) for name, fn in sides.items()}
    samples: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(rounds):
        for name, fn in sides.items():
            samples[name].append(timed(fn, x, repeats))
    result: dict[str, Any] = {f"{name}_us": statistics.median(s) * 1e6 for name, s in samples.items()}
    result.update(case=label, chunks=chunks, max_abs_diff=errors)
    return result


CASES = {
    "4 prompts x 128 (a 512-token step)": [(128, 128)] * 4,
    "1 prompt x 512": [(512, 512)],
    "16 prompts x 32": [(32, 32)] * 16,
    "512-token chunk after 1,536 cached": [(512, 2048)],
    "128-token chunk after 3,968 cached": [(128, 4096)],
}
QUICK = ["4 prompts x 128 (a 512-token step)", "512-token chunk after 1,536 cached"]


def run(quick: bool, threads: int) -> dict[str, Any]:
    torch.set_num_threads(threads)
    rounds, repeats = (2, 2) if quick else (5, 5)
    names = QUICK if quick else list(CASES)
    return {
        "benchmark": "paged_prefill_attention",
        "environment": {
            "torch": torch.__version__,
            "threads": threads,
            "machine": platform.machine(),
            "compiled": load_kernels("paged_prefill_attention") is not None,
        },
        "results": [case(name, CASES[name], rounds, repeats) for name in names],
    }


def markdown(report: dict[str, Any]) -> str:
    lines = ["| step's prefill chunks | fused µs | SDPA per chunk µs | x SDPA |", "|---|---:|---:|---:|"]
    for r in report["results"]:
        lines.append(f"| {r['case']} | {r['fused_us']:.0f} | {r['sdpa_us']:.0f} | {r['sdpa_us'] / r['fused_us']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    return bench_main("bench_prefill_attention", __doc__, run, markdown)


if __name__ == "__main__":
    raise SystemExit(main())
