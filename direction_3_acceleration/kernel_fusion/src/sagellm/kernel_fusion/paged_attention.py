"""Decode attention over a paged KV cache: one query token per sequence, K/V read from the blocks in place.

Layout (the kv_pool's): ``key_blocks`` / ``value_blocks`` are
``[num_blocks, block_size, Hkv, D]``; row ``i`` of ``block_table`` lists
sequence ``i``'s blocks in order; ``context_lens[i]`` tokens of them are
attended to. Query heads ``h * G .. h * G + G - 1`` share KV head ``h``
(transformers' ``repeat_kv`` order).
"""

from __future__ import annotations

import torch

from sagellm.kernel_fusion.cpu_extension import FUSED_DTYPES, load_kernels

SOURCE = "paged_decode_attention"


def fused_available(query: torch.Tensor, key_blocks: torch.Tensor) -> bool:
    """Whether the C++ kernel takes these inputs (CPU, float32/bfloat16, one dtype, and it compiled)."""
    return (
        query.device.type == "cpu"
        and query.dtype in FUSED_DTYPES
        and key_blocks.dtype == query.dtype
        and load_kernels(SOURCE) is not None
    )


def paged_decode_attention(
    query: torch.Tensor,
    key_blocks: torch.Tensor,
    value_blocks: torch.Tensor,
    block_table: torch.Tensor,
    context_lens: torch.Tensor,
    scale: float | None = None,
) -> torch.Tensor:
    """``softmax(q . K^T * scale) . V`` per sequence: [B, Hq, D] -> [B, Hq, D] in the query's dtype."""
    scale = query.shape[-1] ** -0.5 if scale is None else scale
    if fused_available(query, key_blocks):
        kernels = load_kernels(SOURCE)
        return kernels.paged_decode_attention(
            query.contiguous(),
            key_blocks.contiguous(),
            value_blocks.contiguous(),
            block_table.to(torch.long).contiguous(),
            context_lens.to(torch.long).contiguous(),
            float(scale),
        )
    return paged_decode_attention_reference(query, key_blocks, value_blocks, block_table, context_lens, scale)


def paged_decode_attention_reference(
    query: torch.Tensor,
    key_blocks: torch.Tensor,
    value_blocks: torch.Tensor,
    block_table: torch.Tensor,
    context_lens: torch.Tensor,
    scale: float | None = None,
) -> torch.Tensor:
    """The same in plain PyTorch, one sequence at a time in float32 (the tests' reference, any device)."""
    scale = query.shape[-1] ** -0.5 if scale is None else scale
    batch, num_q_heads, head_dim = query.shape
    block_size, num_kv_heads = key_blocks.shape[1], key_blocks.shape[2]
    group = num_q_heads // num_kv_heads
    out = torch.empty_like(query)
    for i in range(batch):
        length = int(context_lens[i])
        blocks = block_table[i, : -(-length // block_size)].to(torch.long)
        keys = key_blocks.index_select(0, blocks).reshape(-1, num_kv_heads, head_dim)[:length].float()
        values = value_blocks.index_select(0, blocks).reshape(-1, num_kv_heads, head_dim)[:length].float()
        keys = keys.repeat_interleave(group, dim=1)  # [L, Hq, D]
        values = values.repeat_interleave(group, dim=1)
        scores = torch.einsum("hd,lhd->hl", query[i].float(), keys) * scale
        out[i] = torch.einsum("hl,lhd->hd", torch.softmax(scores, dim=-1), values).to(query.dtype)
    return out
