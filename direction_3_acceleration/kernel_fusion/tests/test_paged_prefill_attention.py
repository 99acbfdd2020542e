"""The C++ paged prefill attention equals the PyTorch reference, chunk rows and all, and runs through the cpu set."""

from __future__ import annotations

import pytest
import torch

from sagellm.core.errors import InvalidRequestError
from sagellm.kernel_fusion import (
    CPUKernels,
    load_kernels,
    paged_prefill_attention,
    paged_prefill_attention_reference,
    prefill_available,
)

compiled = pytest.mark.skipif(load_kernels("paged_prefill_attention") is None, reason="no C++ toolchain here")
TOLERANCE = {torch.float32: 2e-5, torch.bfloat16: 2e-2}
GAP = 3  # rows between chunks that belong to no chunk (decode rows in a mixed step): never written


def make_case(
    chunks: list[tuple[int, int]],
    dtype: torch.dtype,
    heads: int = 9,
    kv_heads: int = 3,
    head_dim: int = 64,
    block_size: int = 16,
) -> tuple[torch.Tensor, ...]:
    """Chunks given as (rows, context length), their blocks shuffled through one pool; rows separated by GAP."""
    generator = torch.Generator().manual_seed(sum(n + c for n, c in chunks) + head_dim)
    per_chunk = [-(-length // block_size) for _, length in chunks]
    num_blocks = sum(per_chunk) + 2
    ids = torch.randperm(num_blocks, generator=generator)
    table = torch.zeros(len(chunks), max(per_chunk), dtype=torch.long)
    rows, taken, begin = [], 0, GAP
    for i, ((num_rows, _), count) in enumerate(zip(chunks, per_chunk)):
        table[i, :count] = ids[taken : taken + count]
        taken += count
        rows.append([begin, begin + num_rows])
        begin += num_rows + GAP
    shape = (num_blocks, block_size, kv_heads, head_dim)
    keys = torch.randn(shape, generator=generator).to(dtype)
    values = torch.randn(shape, generator=generator).to(dtype)
    query = (torch.randn(begin, heads, head_dim, generator=generator) * 2).to(dtype)
    lengths = torch.tensor([length for _, length in chunks])
    return query, keys, values, torch.tensor(rows), lengths, table


def as_int8(case: tuple[torch.Tensor, ...]) -> tuple[tuple[torch.Tensor, ...], dict[str, torch.Tensor]]:
    """The case's pool as int8 codes with per-block scales in a strided [N, 2] buffer, as the pool keeps them."""
    query, keys, values, *rest = case
    both = torch.stack((keys.float(), values.float()), dim=1)
    scales = both.abs().amax(dim=(2, 3, 4)) / 127
    codes = torch.round(both / scales.view(-1, 2, 1, 1, 1)).to(torch.int8)
    return (query, codes[:, 0].contiguous(), codes[:, 1].contiguous(), *rest), {
        "key_scales": scales[:, 0],
        "value_scales": scales[:, 1],
    }


CHUNKS = [
    [(128, 128), (5, 5), (20, 300)],  # whole prompts and a chunk after cached context
    [(1, 1), (300, 1000)],  # one row; a context spanning several key tiles
    [(37, 37), (2, 70)],
]


@compiled
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("chunks", CHUNKS)
@pytest.mark.parametrize("head_dim", [64, 20, 112])
def test_fused_equals_reference(dtype: torch.dtype, chunks: list[tuple[int, int]], head_dim: int) -> None:
    case = make_case(chunks, dtype, head_dim=head_dim)
    assert prefill_available(case[0], case[1])
    fused = paged_prefill_attention(*case, out=torch.full_like(case[0], 7.0))
    reference = paged_prefill_attention_reference(*case, out=torch.full_like(case[0], 7.0))
    torch.testing.assert_close(fused.float(), reference.float(), atol=TOLERANCE[dtype], rtol=TOLERANCE[dtype])
    assert bool((fused[:GAP] == 7.0).all())  # rows outside every chunk are left as they were


@compiled
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_int8_cache_equals_the_dequantized_reference(dtype: torch.dtype) -> None:
    args, scales = as_int8(make_case(CHUNKS[0], dtype))
    assert scales["key_scales"].stride(0) == 2
    fused = paged_prefill_attention(*args, **scales)
    reference = paged_prefill_attention_reference(*args, **scales)
    torch.testing.assert_close(fused.float(), reference.float(), atol=TOLERANCE[dtype], rtol=TOLERANCE[dtype])


@compiled
def test_a_row_never_sees_later_positions() -> None:
    query, keys, values, rows, lengths, table = make_case([(20, 40)], torch.float32)
    before = paged_prefill_attention(query, keys, values, rows, lengths, table)
    flat_keys = keys.view(-1, *keys.shape[2:])
    first_row_position = 40 - 20
    for block_index, block in enumerate(table[0, :3].tolist()):  # positions 0..47 live in the first three blocks
        for offset in range(16):
            if block_index * 16 + offset > first_row_position:
                flat_keys[block * 16 + offset] = float("nan")
    after = paged_prefill_attention(query, keys, values, rows, lengths, table)
    begin = int(rows[0, 0])
    torch.testing.assert_close(after[begin], before[begin])  # the chunk's first row: nothing after it read


@compiled
def test_bad_inputs_raise() -> None:
    query, keys, values, rows, lengths, table = make_case([(5, 5)], torch.float32)
    with pytest.raises(RuntimeError, match="out of range"):
        paged_prefill_attention(query, keys, values, rows, lengths, table + keys.shape[0])
    with pytest.raises(RuntimeError, match="context shorter"):
        paged_prefill_attention(query, keys, values, rows, torch.tensor([2]), table)
    with pytest.raises(RuntimeError, match="more blocks"):
        paged_prefill_attention(query, keys, values, rows, torch.tensor([999]), table)
    args, scales = as_int8(make_case([(5, 5)], torch.float32))
    with pytest.raises(RuntimeError, match="key scales"):  # fewer scales than pool blocks: never read past them
        paged_prefill_attention(*args, key_scales=scales["key_scales"][:1], value_scales=scales["value_scales"])


def test_scales_and_int8_blocks_go_together() -> None:
    args, scales = as_int8(make_case([(4, 4)], torch.float32))
    with pytest.raises(InvalidRequestError):
        paged_prefill_attention(*args, key_scales=scales["key_scales"])


def test_the_cpu_set_offers_it() -> None:
    kernels = CPUKernels()
    case = make_case([(9, 30)], torch.float32)
    assert "paged_prefill_attention" in kernels.ops
    assert kernels.serves("paged_prefill_attention", case[0], case[1]) == prefill_available(case[0], case[1])
    out = kernels.paged_prefill_attention(*case, out=torch.zeros_like(case[0]))
    torch.testing.assert_close(out, paged_prefill_attention_reference(*case), atol=2e-5, rtol=2e-5)
    half = make_case([(3, 3)], torch.float16)
    assert not prefill_available(half[0], half[1])  # float16: the reference serves
    torch.testing.assert_close(paged_prefill_attention(*half), paged_prefill_attention_reference(*half))
