"""The compiled int8 KV write equals the per-block PyTorch reference bit for bit."""

from __future__ import annotations

import pytest
import torch

from sagellm.core.errors import InvalidRequestError
from sagellm.kernel_fusion import CPUKernels, load_kernels, quantize_kv, quantize_kv_reference

compiled = pytest.mark.skipif(load_kernels("int8_kv_write") is None, reason="no C++ toolchain here")
BLOCK, HEADS, DIM, NUM_BLOCKS = 4, 2, 16, 6


def pool_like(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Layer 0's [2, N, bs, H, D] codes and [2, N] scales as strided views of a pool-shaped store, half-filled."""
    store = torch.randint(-127, 128, (NUM_BLOCKS, 2, 2, BLOCK, HEADS, DIM), generator=generator, dtype=torch.int8)
    scales = torch.rand(NUM_BLOCKS, 2, 2, generator=generator) * 0.02
    scales[0] = 0.0  # a fresh block: whatever codes it holds must not survive
    return store[:, 0].transpose(0, 1), scales[:, 0].t()


def steps() -> list[list[int]]:
    return [
        [1 * BLOCK + 2, 3 * BLOCK + 1, 0 * BLOCK + 0],  # decode: one token per block
        [2 * BLOCK + 0, 2 * BLOCK + 1, 2 * BLOCK + 2, 2 * BLOCK + 3, 5 * BLOCK + 0],  # prefill: a block and a bit
    ]


@compiled
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("loud", [0.001, 1.0, 50.0])  # below, around and above the blocks' ranges
def test_compiled_write_equals_the_reference_bit_for_bit(dtype: torch.dtype, loud: float) -> None:
    generator = torch.Generator().manual_seed(int(loud * 1000))
    codes, scales = pool_like(generator)
    ref_codes, ref_scales = codes.clone(), scales.clone()
    for slots in steps():
        values = (torch.randn(2, len(slots), HEADS, DIM, generator=generator) * loud).to(dtype)
        slot_tensor = torch.tensor(slots)
        quantize_kv(codes, scales, slot_tensor, values)
        quantize_kv_reference(ref_codes, ref_scales, slot_tensor, values)
        assert torch.equal(codes, ref_codes) and torch.equal(scales, ref_scales)
    assert float(scales[:, 0].min()) > 0 and bool((codes.abs() <= 127).all())


def test_reference_reads_back_close_to_what_was_written() -> None:
    codes = torch.zeros(1, 2, BLOCK, HEADS, DIM, dtype=torch.int8)
    scales = torch.zeros(1, 2)
    values = torch.randn(1, 3, HEADS, DIM)
    quantize_kv_reference(codes, scales, torch.tensor([0, 1, 5]), values)
    back = codes[0].flatten(0, 1)[[0, 1, 5]].float() * scales[0].repeat_interleave(BLOCK)[[0, 1, 5]].view(-1, 1, 1)
    assert float((back - values[0]).abs().max()) <= float(scales.max()) / 2 + 1e-6


def test_bad_inputs_raise() -> None:
    codes, scales = torch.zeros(2, 3, BLOCK, HEADS, DIM, dtype=torch.int8), torch.zeros(2, 3)
    values = torch.zeros(2, 1, HEADS, DIM)
    with pytest.raises(InvalidRequestError, match="outside"):
        quantize_kv_reference(codes, scales, torch.tensor([3 * BLOCK]), values)
    with pytest.raises(InvalidRequestError, match="scales"):
        quantize_kv(codes, torch.zeros(2, 4), torch.tensor([0]), values)
    with pytest.raises(InvalidRequestError, match="values"):
        quantize_kv(codes, scales, torch.tensor([0, 1]), values)
    with pytest.raises(InvalidRequestError, match="int8"):
        quantize_kv(codes.float(), scales, torch.tensor([0]), values)


@compiled
def test_the_cpu_set_offers_and_serves_it() -> None:
    kernels = CPUKernels()
    codes, scales = torch.zeros(2, 3, BLOCK, HEADS, DIM, dtype=torch.int8), torch.zeros(2, 3)
    values = torch.ones(2, 1, HEADS, DIM, dtype=torch.bfloat16)
    assert "quantize_kv" in kernels.ops and kernels.serves("quantize_kv", codes, values)
    assert not kernels.serves("quantize_kv", codes.float(), values)
    kernels.quantize_kv(codes, scales, torch.tensor([4]), values)
    assert torch.allclose(scales[:, 1], torch.full((2,), 1 / 127)) and int(codes[0, 1, 0].max()) == 127
