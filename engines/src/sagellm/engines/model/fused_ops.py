"""A registry fused-kernel set's one-pass RMSNorm, SiLU-gate and RoPE, routed into the decoder layers.

Used where the set serves the model's tensors, float32 included: float32 is
the default on CPUs without bf16 instructions, and its fused passes (rounding
once instead of once per op) keep the engine's logits within the token-exact
tests' bound against transformers (SmolLM2-135M on 2 Zen 3 cores: 45 % of it,
24-32 % unfused; decode with packed weights 35-38 -> 47-53 tok/s).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from sagellm.core.protocols import DecoderKernels, FusedKernel
from sagellm.engines.model.config import ModelConfig


class RopeInputs(NamedTuple):
    """This step's rotary inputs: per-token cos/sin rows [T, 1, D] (unfused), or the float32 tables (fused)."""

    positions: torch.Tensor
    cos: torch.Tensor
    sin: torch.Tensor


class FusedElementwise:
    """A set's :class:`~sagellm.core.protocols.DecoderKernels`, for the model's dtype and device."""

    OPS = ("rms_norm", "silu_mul", "rope_qk")

    def __init__(self, kernels: DecoderKernels) -> None:
        self.kernels = kernels

    @classmethod
    def offered_by(cls, kernels: FusedKernel, like: torch.Tensor) -> FusedElementwise | None:
        """The ops where ``kernels`` has the group and serves tensors like ``like`` (the model's dtype/device)."""
        if not isinstance(kernels, DecoderKernels):
            return None
        probe = like.new_zeros(1, 2)
        return cls(kernels) if all(kernels.serves(op, probe) for op in cls.OPS) else None

    def rms_norm(self, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        out: torch.Tensor = self.kernels.rms_norm(x, weight, eps)
        return out

    def silu_mul(self, gate_up: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.kernels.silu_mul(gate_up)
        return out

    def rope_qk(self, qkv: torch.Tensor, rope: RopeInputs, cfg: ModelConfig) -> tuple[torch.Tensor, torch.Tensor]:
        q, k = self.kernels.rope_qk(
            qkv, rope.cos, rope.sin, rope.positions, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        )
        return q, k
