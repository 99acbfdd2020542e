"""A fixed piece of work timed beside a benchmark: how fast the machine is right now.

CI machines differ between runs (another CPU model, another job on the same
cores), by more than the regressions the gate must catch. A bf16 GEMM of a
decode step's shape ([16, 576] x [576, 1536], SmolLM2-135M's MLP, 16 rows)
runs on the same kernels and memory the engine's steps do, so its GFLOP/s
move with the machine, not with sageLLM's code. ``sagellm ci-gate`` divides
throughputs (and multiplies latencies) by the ratio of the two reports'
references. Timed before and after the benchmark; the faster timing is recorded.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from sagellm.engines.engine.device import cpu_has_fast_bf16

ROWS, IN_FEATURES, OUT_FEATURES = 16, 576, 1536
REPEATS = 200  # one timing: ~10-40 ms on 2 cores
TIMINGS = 9
REFERENCE_KEY = "reference"


def measure_reference_gflops() -> float:
    """Median GFLOP/s of the reference GEMM over several timings (bf16 where the CPU has it, else float32)."""
    dtype = torch.bfloat16 if cpu_has_fast_bf16() else torch.float32
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(ROWS, IN_FEATURES, generator=generator).to(dtype)
    weight = torch.randn(OUT_FEATURES, IN_FEATURES, generator=generator).to(dtype)
    flops = 2.0 * ROWS * IN_FEATURES * OUT_FEATURES * REPEATS
    rates = []
    for _ in range(TIMINGS + 1):
        started = time.perf_counter()
        for _ in range(REPEATS):
            torch.nn.functional.linear(x, weight)
        rates.append(flops / (time.perf_counter() - started) / 1e9)
    return statistics.median(rates[1:])  # the first timing warms caches and oneDNN


def reference_section(before: float, after: float) -> dict[str, Any]:
    """The faster of the two timings counts: noise only ever slows a timing down, and one slowed
    reference would excuse a slowed engine (seen: 434 GFLOP/s before a run, 269 after it)."""
    return {"kind": f"gemm {ROWS}x{IN_FEATURES}x{OUT_FEATURES}", "gflops": max(before, after),
            "before_gflops": before, "after_gflops": after}  # fmt: skip


def reference_gflops_of(report: dict[str, Any]) -> float | None:
    section = report.get(REFERENCE_KEY)
    value = section.get("gflops") if isinstance(section, dict) else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) and value > 0 else None
