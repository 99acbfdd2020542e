"""Decode attention over a paged KV cache: one query token per sequence, K/V read from the blocks in place.

Layout (the kv_pool's): ``key_blocks`` / ``value_blocks`` are
``[num_blocks, block_size, Hkv, D]``; row ``i`` of ``block_table`` lists
sequence ``i``'s blocks in order; ``context_lens[i]`` tokens of them are
attended to. Query heads ``h * G .. h * G + G - 1`` share KV head ``h``
(transformers' ``repeat_kv`` order).

An int8 cache (sagellm-kv-pool's ``cache_dtype: int8``) passes its codes as
the blocks plus ``key_scales`` / ``value_scales``, float32 ``[num_blocks]``
(one scale per block, value = code * scale); the kernel folds the scales
into the scores and weights instead of dequantizing the context.
"""

from __future__ import annotations

import torch

from sagellm.core.errors import InvalidRequestError
from sagellm.kernel_fusion.cpu_extension import FUSED_DTYPES, load_kernels

SOURCE = "paged_decode_attention"


def fused_available(query: torch.Tensor, key_blocks: torch.Tensor) -> bool:
    """Whether the C++ kernel takes these inputs (see :func:`serves_paged_cache`)."""
    return serves_paged_cache(SOURCE, query, key_blocks)


def serves_paged_cache(source: str, query: torch.Tensor, key_blocks: torch.Tensor) -> bool:
    """Whether the attention kernel built from ``csrc/<source>.cpp`` takes these inputs: CPU, float32/bfloat16
    queries, a cache of the query's dtype or int8 codes, and it compiled."""
    return (
        query.device.type == "cpu"
        and query.dtype in FUSED_DTYPES
        and key_blocks.dtype in (query.dtype, torch.int8)
        and load_kernels(source) is not None
    )


def paged_decode_attention(
    query: torch.Tensor,
    key_blocks: torch.Tensor,
    value_blocks: torch.Tensor,
    block_table: torch.Tensor,
    context_lens: torch.Tensor,
    scale: float | None = None,
    key_scales: torch.Tensor | None = None,
    value_scales: torch.Tensor | None = None,
) -> torch.Tensor:
    """``softmax(q . K^T * scale) . V`` per sequence: [B, Hq, D] -> [B, Hq, D] in the query's dtype."""
    scale = query.shape[-1] ** -0.5 if scale is None else scale
    check_scales(key_blocks, key_scales, value_scales)
    if fused_available(query, key_blocks):
        kernels = load_kernels(SOURCE)
        return kernels.paged_decode_attention(
            query.contiguous(),
            key_blocks.contiguous(),
            value_blocks.contiguous(),
            block_table.to(torch.long).contiguous(),
            context_lens.to(torch.long).contiguous(),
            float(scale),
            key_scales,
            value_scales,
        )
    return paged_decode_attention_reference(
        query, key_blocks, value_blocks, block_table, context_lens, scale, key_scales, value_scales
    )


def check_scales(key_blocks: torch.Tensor, key_scales: torch.Tensor | None, value_scales: torch.Tensor | None) -> None:
    quantized = key_blocks.dtype == torch.int8
    if (key_scales is not None, value_scales is not None) != (quantized, quantized):
        raise InvalidRequestError(
            "key_scales and value_scales go with int8 key/value blocks, and int8 blocks need both"
        )


def paged_decode_attention_reference(
    query: torch.Tensor,
    key_blocks: torch.Tensor,
    value_blocks: torch.Tensor,
    block_table: torch.Tensor,
    context_lens: torch.Tensor,
    scale: float | None = None,
    key_scales: torch.Tensor | None = None,
    value_scales: torch.Tensor | None = None,
) -> torch.Tensor:
    """The same in plain PyTorch, one sequence at a time in float32 (the tests' reference, any device)."""
    scale = query.shape[-1] ** -0.5 if scale is None else scale
    check_scales(key_blocks, key_scales, value_scales)
    out = torch.empty_like(query)
    for i in range(query.shape[0]):
        keys, values = context_per_query_head(
            key_blocks, value_blocks, block_table[i], int(context_lens[i]), query.shape[1], key_scales, value_scales
        )
        scores = torch.einsum("hd,lhd->hl", query[i].float(), keys) * scale
        out[i] = torch.einsum("hl,lhd->hd", torch.softmax(scores, dim=-1), values).to(query.dtype)
    return out


def context_per_query_head(
    key_blocks: torch.Tensor,
    value_blocks: torch.Tensor,
    table: torch.Tensor,
    length: int,
    num_q_heads: int,
    key_scales: torch.Tensor | None = None,
    value_scales: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One sequence's first ``length`` keys and values, float32 [L, Hq, D], each KV head repeated for its
    query heads (the references' view of a context; ``table`` lists the sequence's blocks)."""
    block_size, num_kv_heads, head_dim = key_blocks.shape[1:]
    blocks = table[: -(-length // block_size)].to(torch.long)
    group = num_q_heads // num_kv_heads
    keys = dequantized_blocks(key_blocks, key_scales, blocks).reshape(-1, num_kv_heads, head_dim)[:length]
    values = dequantized_blocks(value_blocks, value_scales, blocks).reshape(-1, num_kv_heads, head_dim)[:length]
    return keys.repeat_interleave(group, dim=1), values.repeat_interleave(group, dim=1)


def dequantized_blocks(blocks: torch.Tensor, scales: torch.Tensor | None, ids: torch.Tensor) -> torch.Tensor:
    """The named blocks as float32 (int8 codes times their block's scale)."""
    picked = blocks.index_select(0, ids).float()
    return picked if scales is None else picked * scales.index_select(0, ids).view(-1, 1, 1, 1).float()
