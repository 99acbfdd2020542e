"""How long the device takes to compute tokens and to move KV: the numbers policies weigh.

Two decisions need seconds rather than token counts:

* **preemption mode** -- swapping a victim's KV to host memory and back
  costs ``2 × KV bytes / host bandwidth``; recomputing it costs the prefill
  FLOPs of its context over the compute rate. Swap is linear in the
  context, recompute grows quadratically (attention), so short contexts
  favour recompute on a fast device and long ones favour swap.
* **SLO slack** -- how long a prefill chunk or a whole step will take.

Prefill FLOPs of a chunk of ``n`` tokens starting at position ``s``::

    dense:      flops_per_token × n                    (≈ 2 × parameters per token)
    attention:  attention_flops_coeff × n × (s + n/2)  (query/key pairs; ≈ 4 × layers × hidden)

    positions   0 ........ s ........ s+n
    keys seen   [ context  | causal triangle ]
                 n × s       n × n / 2

The defaults describe the engine's embedded model (SmolLM2-135M: 30 layers,
hidden 576, 3 KV heads of 64, bf16 KV) on the 2-core CPU of
``engines/README.md``, fitted to its measured figures: a cold 1k-token
prompt takes ~1.2 s to first token (dense + attention FLOPs at 2.5e11/s)
and a batch-1 decode step ~24 ms (mostly fixed overhead). A GPU deployment
sets its own in ``scheduler_ir.options``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from sagellm.core.errors import ConfigError
from sagellm.core.types import SequenceView


@dataclass(frozen=True, slots=True)
class CostModel:
    """Device speeds, as constructor options with CPU defaults."""

    kv_bytes_per_token: float = 23_040.0  # 2 (K, V) × 30 layers × 3 heads × 64 dims × 2 bytes
    host_bandwidth_bytes_per_s: float = 10e9  # device <-> host copy
    flops_per_token: float = 2.7e8  # 2 × 135 M parameters
    attention_flops_coeff: float = 69_120.0  # 4 × 30 layers × 576 hidden, per query/key pair
    compute_flops_per_s: float = 2.5e11  # achieved on prefill (bf16 matmuls)
    step_overhead_s: float = 0.02  # per step, whatever its size (weight reads, Python, sampling)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            strictly = f.name not in ("attention_flops_coeff", "step_overhead_s")
            is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not is_number or not math.isfinite(value) or value < 0 or (strictly and value == 0):
                bound = "> 0" if strictly else ">= 0"
                raise ConfigError(f"scheduler_ir.options.{f.name} must be a finite number {bound} (got {value!r})")

    @classmethod
    def option_names(cls) -> frozenset[str]:
        return frozenset(f.name for f in fields(cls))

    def prefill_seconds(self, start: int, num_tokens: int) -> float:
        """Compute time of ``num_tokens`` prompt tokens at positions ``start``, ``start + 1``, ..."""
        pairs = num_tokens * (start + num_tokens / 2)
        return (self.flops_per_token * num_tokens + self.attention_flops_coeff * pairs) / self.compute_flops_per_s

    def step_seconds(self, num_tokens: int) -> float:
        """Rough duration of a step of ``num_tokens`` tokens (dense FLOPs plus the fixed overhead)."""
        return self.step_overhead_s + self.flops_per_token * num_tokens / self.compute_flops_per_s

    def tokens_within(self, seconds: float) -> int:
        """The most tokens a step can hold and still finish within ``seconds`` (0 if none)."""
        spare = seconds - self.step_overhead_s
        if spare <= 0:
            return 0
        return math.floor(spare * self.compute_flops_per_s / self.flops_per_token + 1e-9)  # 39.999... is 40

    def swap_seconds(self, view: SequenceView, block_size: int) -> float:
        """Copy the blocks a sequence holds to the host and back (whole blocks move, full or not)."""
        num_bytes = view.num_blocks_held * block_size * self.kv_bytes_per_token
        return 2.0 * num_bytes / self.host_bandwidth_bytes_per_s

    def recompute_seconds(self, view: SequenceView) -> float:
        """Prefill the sequence's computed context again from position 0."""
        return self.prefill_seconds(0, view.num_computed_tokens)
