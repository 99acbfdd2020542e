"""One-pass RMSNorm, SiLU-gate and RoPE equal their PyTorch chains (exactly in float32 up to
summation order; within one bf16 step in bfloat16, where the chains round in between)."""

from __future__ import annotations

import pytest
import torch

from sagellm.kernel_fusion import (
    CPUKernels,
    compiled_for,
    load_kernels,
    rms_norm,
    rms_norm_reference,
    rope_qk,
    rope_qk_reference,
    silu_mul,
    silu_mul_reference,
)

pytestmark = pytest.mark.skipif(load_kernels("decoder_elementwise") is None, reason="no C++ toolchain here")
DTYPES = [torch.float32, torch.bfloat16]


def close(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.dtype == b.dtype and a.shape == b.shape
    if a.dtype == torch.float32:
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    else:  # one bf16 step (2^-8 relative) apart at most
        torch.testing.assert_close(a.float(), b.float(), atol=1e-2, rtol=2**-7)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 576), (37, 576), (5, 100)])  # 100: a ragged AVX-512 tail
def test_rms_norm(dtype: torch.dtype, shape: tuple[int, int]) -> None:
    x = (torch.randn(shape) * 3).to(dtype)
    weight = torch.rand(shape[1]).to(dtype) + 0.5
    assert compiled_for(x)
    close(rms_norm(x, weight, 1e-5), rms_norm_reference(x, weight, 1e-5))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 3072), (19, 3072), (4, 42)])
def test_silu_mul(dtype: torch.dtype, shape: tuple[int, int]) -> None:
    gate_up = (torch.randn(shape) * 4).to(dtype)
    close(silu_mul(gate_up), silu_mul_reference(gate_up))


def test_silu_saturates_cleanly_at_extremes() -> None:
    gate_up = torch.tensor([[-200.0, 0.0, 200.0, 1.0, 1.0, 1.0]] * 1)
    torch.testing.assert_close(silu_mul(gate_up), torch.tensor([[0.0, 0.0, 200.0]]))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tokens", [1, 23])
def test_rope_qk(dtype: torch.dtype, tokens: int) -> None:
    heads, kv_heads, head_dim, max_positions = 9, 3, 64, 512
    inv_freq = 1.0 / (10000 ** (torch.arange(0, head_dim, 2).float() / head_dim))
    angles = torch.outer(torch.arange(max_positions).float(), inv_freq)
    angles = torch.cat((angles, angles), dim=-1)
    cos, sin = angles.cos(), angles.sin()
    qkv = torch.randn(tokens, (heads + 2 * kv_heads) * head_dim).to(dtype)
    positions = torch.randint(0, max_positions, (tokens,))
    fused = rope_qk(qkv, cos, sin, positions, heads, kv_heads, head_dim)
    reference = rope_qk_reference(qkv, cos, sin, positions, heads, kv_heads, head_dim)
    for a, b in zip(fused, reference):
        if dtype == torch.bfloat16:  # the chain rounds cos/sin and both products to bf16 first
            torch.testing.assert_close(a.float(), b.float(), atol=4e-2, rtol=2e-2)
        else:
            close(a, b.contiguous())


def test_rope_rejects_positions_past_the_table() -> None:
    cos = torch.ones(4, 64)
    with pytest.raises(RuntimeError, match="position"):
        rope_qk(torch.randn(1, 15 * 64), cos, cos, torch.tensor([4]), 9, 3, 64)


def test_kernel_set_serves_the_ops_for_cpu_float_tensors() -> None:
    kernels = CPUKernels()
    for op in ("rms_norm", "silu_mul", "rope_qk"):
        assert op in kernels.ops and kernels.serves(op, torch.zeros(2, 2, dtype=torch.bfloat16))
    assert not kernels.serves("rms_norm", torch.zeros(2, 2, dtype=torch.float16))
    torch.testing.assert_close(kernels.silu_mul(torch.zeros(1, 4)), torch.zeros(1, 2))
