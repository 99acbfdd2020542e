"""The compute roof of a decode step: its matmuls alone, as dense GEMMs, timed on this machine now.

A decode step of ``rows`` sequences multiplies ``rows`` activations by every
weight of the model (per layer: fused qkv, o, fused gate/up, down; then the
LM head). Timing those GEMMs alone, at the engine's dtype, on the same cores
and in the same run as the benchmark, gives the tokens/s no engine could
exceed with these kernels -- the roof a served throughput is judged against
(issue 16: 64 users at >= 40 % of it).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sagellm.engines.model.config import ModelConfig

TIMINGS = 7


@dataclass(frozen=True, slots=True)
class StepRoof:
    rows: int
    step_ms: float
    gflops: float

    @property
    def tokens_per_s(self) -> float:
        return self.rows / (self.step_ms / 1000)


def step_shapes(config: ModelConfig) -> list[tuple[int, int, int]]:
    """(in_features, out_features, count) of every matmul a decode step runs."""
    hidden, heads = config.hidden_size, config.head_dim
    qkv = (config.num_heads + 2 * config.num_kv_heads) * heads
    per_layer = [(hidden, qkv), (config.num_heads * heads, hidden), (hidden, 2 * config.intermediate_size),
                 (config.intermediate_size, hidden)]  # fmt: skip
    return [(k, n, config.num_layers) for k, n in per_layer] + [(hidden, config.vocab_size, 1)]


def measure_step_roof(config: ModelConfig, rows: int, dtype: torch.dtype = torch.bfloat16) -> StepRoof:
    """Each layer has its own weights, as in the model: they stream from memory, not from a warm cache."""
    total_s, flops = 0.0, 0.0
    for in_features, out_features, count in step_shapes(config):
        x = torch.randn(rows, in_features).to(dtype)
        weights = [torch.randn(out_features, in_features).to(dtype) for _ in range(count)]
        F.linear(x, weights[0])  # warm: oneDNN makes its primitive
        timings = []
        for _ in range(TIMINGS):
            started = time.perf_counter()
            for weight in weights:
                F.linear(x, weight)
            timings.append(time.perf_counter() - started)
        total_s += statistics.median(timings)
        flops += 2.0 * rows * in_features * out_features * count
    return StepRoof(rows, total_s * 1000, flops / total_s / 1e9)
