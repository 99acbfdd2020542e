"""One-pass RMSNorm, SiLU-gate and RoPE for Llama decoder layers, with their PyTorch references.

The references are the unfused chains the engine runs (transformers'
rounding: RMSNorm statistics in float32, then ``weight * x.to(dtype)``;
``silu(gate) * up``; rotate-half RoPE). The compiled versions compute each
in float32 and round once, so in bf16 they may differ from the chains by
one bf16 step where the chain rounded in between.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sagellm.kernel_fusion.cpu_extension import FUSED_DTYPES, load_kernels

SOURCE = "decoder_elementwise"


def compiled_for(tensor: torch.Tensor) -> bool:
    """Whether the compiled passes take tensors like this one (CPU, float32/bfloat16, and it built)."""
    return tensor.device.type == "cpu" and tensor.dtype in FUSED_DTYPES and load_kernels(SOURCE) is not None


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm of each row of ``x`` ([T, H])."""
    if compiled_for(x) and weight.dtype == x.dtype:
        return load_kernels(SOURCE).rms_norm(x.contiguous(), weight.contiguous(), float(eps))
    return rms_norm_reference(x, weight, eps)


def silu_mul(gate_up: torch.Tensor) -> torch.Tensor:
    """``silu(gate) * up`` of a fused [T, 2I] gate/up projection."""
    if compiled_for(gate_up):
        return load_kernels(SOURCE).silu_mul(gate_up.contiguous())
    return silu_mul_reference(gate_up)


def rope_qk(
    qkv: torch.Tensor,
    cos_table: torch.Tensor,
    sin_table: torch.Tensor,
    positions: torch.Tensor,
    num_q_heads: int,
    num_kv_heads: int,
    head_dim: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotated q [T, Hq, D] and k [T, Hkv, D] from a fused [T, (Hq + 2 Hkv) D] projection.

    ``cos_table`` / ``sin_table`` are float32 [max_positions, D] ("rotate half"
    layout: each half repeats the frequencies), indexed by ``positions``.
    """
    if compiled_for(qkv):
        q, k = load_kernels(SOURCE).rope_qk(
            qkv.contiguous(),
            cos_table.float().contiguous(),
            sin_table.float().contiguous(),
            positions.to(torch.long).contiguous(),
            num_q_heads,
            num_kv_heads,
            head_dim,
        )
        return q, k
    return rope_qk_reference(qkv, cos_table, sin_table, positions, num_q_heads, num_kv_heads, head_dim)


def rms_norm_reference(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    x32 = x.float()
    x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    return weight * x32.to(x.dtype)


def silu_mul_reference(gate_up: torch.Tensor) -> torch.Tensor:
    gate, up = gate_up.chunk(2, dim=-1)
    return F.silu(gate) * up


def rope_qk_reference(
    qkv: torch.Tensor,
    cos_table: torch.Tensor,
    sin_table: torch.Tensor,
    positions: torch.Tensor,
    num_q_heads: int,
    num_kv_heads: int,
    head_dim: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    cos = cos_table.index_select(0, positions).unsqueeze(1).to(qkv.dtype)
    sin = sin_table.index_select(0, positions).unsqueeze(1).to(qkv.dtype)
    q, k, _ = qkv.split([num_q_heads * head_dim, num_kv_heads * head_dim, num_kv_heads * head_dim], dim=-1)

    def rotate(x: torch.Tensor, heads: int) -> torch.Tensor:
        x = x.reshape(-1, heads, head_dim)
        half = head_dim // 2
        return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin

    return rotate(q, num_q_heads), rotate(k, num_kv_heads)
