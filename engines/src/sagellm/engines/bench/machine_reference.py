"""A fixed piece of work timed beside a benchmark: how fast the machine is right now.

CI machines differ between runs (another CPU model, another job on the same
cores), by more than the regressions the gate must catch. ``sagellm ci-gate``
divides throughputs (and multiplies latencies) by the ratio of the two
reports' reference scores, so the reference must move with the machine the
way the engine's steps do, and not with sageLLM's code (plain torch only).

The score is the geometric mean of two rates a small-batch decode step is
made of: an int8 matmul of a decode step's MLP shape (``torch._int_mm``,
VNNI where the CPU has it) and the dispatch of tiny torch ops (per-op
overhead, which dominates a 135M model's step). A bf16 GEMM was the
reference until 2026-12-06 and misread the machine: on the 2-core AMD EPYC
it fell from ~450 to ~265 GFLOP/s after ~30 s of sustained load and stayed
there, while int8 matmuls, op dispatch and the engine's own tok/s did not
move (20 interleaved samples; baselines/README.md), so one CI run read as
72 % faster than it was. ``sagellm bench --machine-reference`` times it
before each run of the suite and after the last, and records the median.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

ROWS, IN_FEATURES, OUT_FEATURES = 32, 576, 1536  # torch._int_mm wants > 16 rows
MATMUL_REPEATS = 100
TINY_OPS = 400
TIMINGS = 9
REFERENCE_KEY = "reference"
KIND = f"geomean(int8 matmul {ROWS}x{IN_FEATURES}x{OUT_FEATURES} GOP/s, tiny-op kop/s)"


def measure_reference() -> dict[str, float]:
    """The score and its two components, each the median of several timings after one warm-up."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randint(-127, 128, (ROWS, IN_FEATURES), dtype=torch.int8, generator=generator)
    weight_t = torch.randint(-127, 128, (OUT_FEATURES, IN_FEATURES), dtype=torch.int8, generator=generator).t()
    a, b = torch.ones(8), torch.ones(8)
    int8_gops = _median_rate(
        lambda: torch._int_mm(x, weight_t), MATMUL_REPEATS, 2.0 * ROWS * IN_FEATURES * OUT_FEATURES / 1e9
    )
    tiny_kops = _median_rate(lambda: torch.add(a, b), TINY_OPS, 1e-3)
    return {"score": math.sqrt(int8_gops * tiny_kops), "int8_gops": int8_gops, "tiny_op_kops": tiny_kops}


def _median_rate(work: Callable[[], object], repeats: int, units_per_call: float) -> float:
    rates = []
    for _ in range(TIMINGS + 1):
        started = time.perf_counter()
        for _ in range(repeats):
            work()
        rates.append(units_per_call * repeats / (time.perf_counter() - started))
    return statistics.median(rates[1:])  # the first timing warms caches and kernels


def reference_section(samples: Sequence[dict[str, float]]) -> dict[str, Any]:
    """The median of samples timed between a benchmark's runs: the machine's pace over the whole
    benchmark, not at its two ends (where one slowed timing would excuse a slowed engine)."""
    if not samples:
        raise ValueError("a reference needs at least one sample")
    score = statistics.median(sample["score"] for sample in samples)
    return {"kind": KIND, "score": score, "samples": [{k: round(v, 1) for k, v in s.items()} for s in samples]}


def reference_score_of(report: dict[str, Any]) -> float | None:
    """The report's reference score; None when absent or of another kind (not comparable)."""
    section = report.get(REFERENCE_KEY)
    if not isinstance(section, dict) or section.get("kind") != KIND:
        return None
    value = section.get("score")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) and value > 0 else None
