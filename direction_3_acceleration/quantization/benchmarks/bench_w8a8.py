"""Benchmark W8A8 linears against bf16 (and fp32) ``F.linear`` on SmolLM2-135M's shapes.

    python benchmarks/bench_w8a8.py [--quick] [--out DIR] [--threads N]

For each linear of a SmolLM2-135M decoder layer (fused qkv 576->960, o
576->576, fused gate/up 576->3072, down 1536->576) and each batch of rows
(1 = batch-1 decode, 16/64 = concurrent decode, 512/2048 = prefill chunks):

* ``bf16``, ``fp32``: the peers, ``F.linear`` on the dense weight;
* ``w8a8``: ``int8_linear`` (per-token int8 activations x per-channel int8
  weights, smoothing included) with the fused C++ passes;
* ``w8a8 (torch ops)``: the same with the plain PyTorch passes, to show what
  the fusion buys;
* the relative error of w8a8 and bf16 against the fp32 product, on rows with
  an outlier channel (x40), as real activations have.

Every case runs interleaved (bf16, w8a8, ... in turn) and reports the median
of the rounds, so load from other processes lands on all sides alike.
Writes ``bench_w8a8.json`` and ``bench_w8a8.md`` to ``--out`` (default benchmarks/results/).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from sagellm.quantization import SmoothQuantW8A8, int8_linear, kernels, w8a8_linear

HERE = Path(__file__).resolve().parent
SHAPES = {"qkv": (576, 960), "o_proj": (576, 576), "gate_up": (576, 3072), "down": (1536, 576)}


def timed(fn: Callable[[], Any], repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def case(rows: int, k: int, n: int, rounds: int, repeats: int) -> dict[str, float]:
    generator = torch.Generator().manual_seed(rows * 7 + n)
    x = torch.randn(rows, k, generator=generator)
    x[:, 5] *= 40.0
    weight = torch.randn(n, k, generator=generator) * 0.05
    qweight = SmoothQuantW8A8().quantize(weight, calibration=x.abs().amax(dim=0))
    x16, w16 = x.bfloat16(), weight.bfloat16()
    fused = kernels()

    def w8a8_torch_ops() -> torch.Tensor:
        original = w8a8_linear.kernels
        w8a8_linear.kernels = lambda: None  # type: ignore[assignment]
        try:
            return int8_linear(x16, qweight)
        finally:
            w8a8_linear.kernels = original  # type: ignore[assignment]

    sides: dict[str, Callable[[], Any]] = {
        "fp32": lambda: F.linear(x, weight),
        "bf16": lambda: F.linear(x16, w16),
        "w8a8": lambda: int8_linear(x16, qweight),
        "w8a8_torch_ops": w8a8_torch_ops,
    }
    for fn in sides.values():
        fn()  # warm-up
    samples: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(rounds):
        for name, fn in sides.items():
            samples[name].append(timed(fn, repeats))
    reference = x @ weight.T
    result = {f"{name}_us": statistics.median(s) * 1e6 for name, s in samples.items()}
    result["w8a8_rel_error"] = float((int8_linear(x16, qweight).float() - reference).norm() / reference.norm())
    result["bf16_rel_error"] = float((F.linear(x16, w16).float() - reference).norm() / reference.norm())
    result["fused_kernels"] = fused is not None
    return result


def run(quick: bool, threads: int) -> dict[str, Any]:
    torch.set_num_threads(threads)
    row_counts = (1, 64) if quick else (1, 16, 64, 512, 2048)
    rounds, repeats = (2, 3) if quick else (5, 10)
    results = []
    for rows in row_counts:
        for name, (k, n) in SHAPES.items():
            reps = max(1, repeats // (4 if rows >= 512 else 1))
            results.append({"layer": name, "rows": rows, "k": k, "n": n, **case(rows, k, n, rounds, reps)})
    return {
        "benchmark": "w8a8",
        "environment": {
            "torch": torch.__version__,
            "threads": threads,
            "machine": platform.machine(),
            "processor": platform.processor(),
            "fused_kernels": kernels() is not None,
        },
        "results": results,
    }


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "| layer | rows | bf16 µs | fp32 µs | w8a8 µs | w8a8 (torch ops) µs | x bf16 | x fp32 | err w8a8 | err bf16 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['layer']} [{r['k']}->{r['n']}] | {r['rows']} | {r['bf16_us']:.0f} | {r['fp32_us']:.0f} | "
            f"{r['w8a8_us']:.0f} | {r['w8a8_torch_ops_us']:.0f} | {r['bf16_us'] / r['w8a8_us']:.2f} | "
            f"{r['fp32_us'] / r['w8a8_us']:.2f} | {r['w8a8_rel_error']:.4f} | {r['bf16_rel_error']:.4f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke-test size (a few seconds)")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="output directory")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = parser.parse_args()
    report = run(args.quick, args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_w8a8.json").write_text(json.dumps(report, indent=2))
    table = markdown(report)
    (args.out / "bench_w8a8.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
