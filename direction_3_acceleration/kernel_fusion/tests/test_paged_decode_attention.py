"""The C++ paged decode attention equals the PyTorch reference, and the cpu kernel set conforms."""

from __future__ import annotations

import pytest
import torch

from sagellm.core import registry
from sagellm.core.config import load_config
from sagellm.core.errors import ConfigError, InvalidRequestError
from sagellm.core.testing import raises
from sagellm.kernel_fusion import (
    CPUKernels,
    fused_available,
    load_kernels,
    paged_decode_attention,
    paged_decode_attention_reference,
)

compiled = pytest.mark.skipif(load_kernels("paged_decode_attention") is None, reason="no C++ toolchain here")
TOLERANCE = {torch.float32: 2e-5, torch.bfloat16: 2e-2}


def make_case(
    lengths: list[int], dtype: torch.dtype, heads: int = 9, kv_heads: int = 3, head_dim: int = 64, block_size: int = 16
) -> tuple[torch.Tensor, ...]:
    """A pool with shuffled block ids, so sequences' blocks are scattered and interleaved."""
    generator = torch.Generator().manual_seed(sum(lengths) + head_dim)
    per_seq = [-(-n // block_size) for n in lengths]
    num_blocks = sum(per_seq) + 3
    ids = torch.randperm(num_blocks, generator=generator)
    width = max(per_seq)
    table = torch.zeros(len(lengths), width, dtype=torch.long)
    taken = 0
    for i, count in enumerate(per_seq):
        table[i, :count] = ids[taken : taken + count]
        taken += count
    shape = (num_blocks, block_size, kv_heads, head_dim)
    keys = torch.randn(shape, generator=generator).to(dtype)
    values = torch.randn(shape, generator=generator).to(dtype)
    query = (torch.randn(len(lengths), heads, head_dim, generator=generator) * 2).to(dtype)
    return query, keys, values, table, torch.tensor(lengths)


@compiled
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    ("lengths", "head_dim"),
    [([1], 64), ([17, 5, 64, 300], 64), ([33, 7], 48), ([9, 40], 20), ([50], 112)],  # 20, 112: the portable path
)
def test_fused_equals_reference(dtype: torch.dtype, lengths: list[int], head_dim: int) -> None:
    case = make_case(lengths, dtype, head_dim=head_dim)
    assert fused_available(case[0], case[1])
    fused = paged_decode_attention(*case)
    reference = paged_decode_attention_reference(*case)
    assert fused.dtype == dtype and fused.shape == case[0].shape
    torch.testing.assert_close(fused.float(), reference.float(), atol=TOLERANCE[dtype], rtol=TOLERANCE[dtype])


def int8_case(lengths: list[int], dtype: torch.dtype, head_dim: int = 64) -> tuple[tuple[torch.Tensor, ...], dict]:
    """make_case's pool as int8 codes with per-block scales held in a strided [N, 2] buffer, as the pool keeps them."""
    query, keys, values, table, lens = make_case(lengths, torch.float32, head_dim=head_dim)
    both = torch.stack((keys, values), dim=1)  # [N, 2, bs, H, D]
    scales = both.abs().amax(dim=(2, 3, 4)) / 127  # [N, 2]
    codes = torch.round(both / scales.view(-1, 2, 1, 1, 1)).to(torch.int8)
    key_codes, value_codes = codes[:, 0].contiguous(), codes[:, 1].contiguous()
    return (query.to(dtype), key_codes, value_codes, table, lens), {
        "key_scales": scales[:, 0],
        "value_scales": scales[:, 1],
    }


@compiled
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("lengths", "head_dim"), [([17, 5, 64, 300], 64), ([9, 40], 20)])
def test_int8_cache_equals_the_dequantized_reference(dtype: torch.dtype, lengths: list[int], head_dim: int) -> None:
    args, scales = int8_case(lengths, dtype, head_dim)
    assert fused_available(args[0], args[1]) and scales["key_scales"].stride(0) == 2
    fused = paged_decode_attention(*args, **scales)
    reference = paged_decode_attention_reference(*args, **scales)
    dequantized = [
        args[i].float() * scales[name].view(-1, 1, 1, 1) for i, name in ((1, "key_scales"), (2, "value_scales"))
    ]
    plain = paged_decode_attention_reference(args[0].float(), *dequantized, args[3], args[4]).to(dtype)
    torch.testing.assert_close(reference, plain, atol=TOLERANCE[dtype], rtol=TOLERANCE[dtype])
    torch.testing.assert_close(fused.float(), reference.float(), atol=TOLERANCE[dtype], rtol=TOLERANCE[dtype])


def test_scales_and_int8_blocks_go_together() -> None:
    args, scales = int8_case([5], torch.float32)
    with pytest.raises(InvalidRequestError, match="int8 blocks need both"):
        paged_decode_attention(*args, key_scales=scales["key_scales"])
    query, keys, values, table, lengths = make_case([5], torch.float32)
    with pytest.raises(InvalidRequestError):
        paged_decode_attention(query, keys, values, table, lengths, **scales)


@compiled
def test_padding_past_a_context_is_never_read() -> None:
    query, keys, values, table, lengths = make_case([20, 3], torch.float32)
    before = paged_decode_attention(query, keys, values, table, lengths)
    keys[table[1, 1:]] = float("nan")  # blocks past sequence 1's context (its table pads with real ids)
    keys.view(-1, *keys.shape[2:])[table[1, 0] * 16 + 3 :][:13] = float("nan")  # the rest of its last block
    torch.testing.assert_close(paged_decode_attention(query, keys, values, table, lengths)[1], before[1])


@compiled
def test_bad_inputs_raise() -> None:
    query, keys, values, table, lengths = make_case([5], torch.float32)
    with pytest.raises(RuntimeError, match="context length"):
        paged_decode_attention(query, keys, values, table, torch.tensor([999]))
    with pytest.raises(RuntimeError, match="head shapes"):
        paged_decode_attention(query[:, :, :32].contiguous(), keys, values, table, lengths)
    with pytest.raises(RuntimeError, match="outside the pool"):
        paged_decode_attention(query, keys, values, table + keys.shape[0], lengths)


def test_other_dtypes_use_the_reference() -> None:
    query, keys, values, table, lengths = make_case([12], torch.float16)
    assert not fused_available(query, keys)
    out = paged_decode_attention(query, keys, values, table, lengths)
    torch.testing.assert_close(out, paged_decode_attention_reference(query, keys, values, table, lengths))


def test_registry_builds_the_cpu_set_and_rejects_options() -> None:
    kernels = registry.create_fused_kernel(load_config(kernel_fusion={"implementation": "cpu"}))
    assert isinstance(kernels, CPUKernels) and "paged_decode_attention" in kernels.ops
    with raises(ConfigError):
        registry.create_fused_kernel(load_config(kernel_fusion={"implementation": "cpu", "options": {"x": 1}}))
    assert not kernels.serves("no_such_op")
