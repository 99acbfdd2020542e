"""Prefill attention over a paged KV cache: every row of a step's prefill chunks, causally, in one call.

A chunk is rows ``[begin, end)`` of the step's flat ``query`` ([T, Hq, D]);
they are the last ``end - begin`` positions of a context of
``context_lens[c]`` tokens whose blocks ``block_tables[c]`` lists (the
chunk's own K/V already written there). Row ``i`` of the chunk attends to
positions ``0 .. context_len - (end - begin) + i``. Cache layout and int8
scales are the kv_pool's, as in :mod:`.paged_attention`.

The compiled kernel (``csrc/paged_prefill_attention.cpp``) replaces one
SDPA call per chunk per layer; the reference computes the same in float32
with PyTorch ops, one chunk at a time.
"""

from __future__ import annotations

import torch

from sagellm.kernel_fusion.cpu_extension import load_kernels
from sagellm.kernel_fusion.paged_attention import check_scales, context_per_query_head, serves_paged_cache

SOURCE = "paged_prefill_attention"


def prefill_available(query: torch.Tensor, key_blocks: torch.Tensor) -> bool:
    """Whether the C++ kernel takes these inputs (as :func:`.paged_attention.fused_available`)."""
    return serves_paged_cache(SOURCE, query, key_blocks)


def paged_prefill_attention(
    query: torch.Tensor,
    key_blocks: torch.Tensor,
    value_blocks: torch.Tensor,
    chunk_rows: torch.Tensor,
    context_lens: torch.Tensor,
    block_tables: torch.Tensor,
    scale: float | None = None,
    key_scales: torch.Tensor | None = None,
    value_scales: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Causal ``softmax(q . K^T * scale) . V`` of each chunk's rows into ``out`` ([T, Hq, D]; other rows untouched).

    ``chunk_rows`` is [C, 2] (begin, end), ``context_lens`` [C], ``block_tables`` [C, max_blocks].
    """
    scale = query.shape[-1] ** -0.5 if scale is None else scale
    check_scales(key_blocks, key_scales, value_scales)
    out = torch.zeros_like(query) if out is None else out
    if prefill_available(query, key_blocks) and _rows_of_adjacent_heads(query) and _rows_of_adjacent_heads(out):
        load_kernels(SOURCE).paged_prefill_attention(
            out,
            query,
            key_blocks.contiguous(),
            value_blocks.contiguous(),
            chunk_rows.to(torch.long).contiguous(),
            context_lens.to(torch.long).contiguous(),
            block_tables.to(torch.long).contiguous(),
            float(scale),
            key_scales,
            value_scales,
        )
        return out
    return paged_prefill_attention_reference(
        query, key_blocks, value_blocks, chunk_rows, context_lens, block_tables, scale, key_scales, value_scales, out
    )


def _rows_of_adjacent_heads(x: torch.Tensor) -> bool:
    """The kernel's layout: rows may be strided, the heads within a row lie end to end."""
    return x.dim() == 3 and x.stride(2) == 1 and x.stride(1) == x.shape[2]


def paged_prefill_attention_reference(
    query: torch.Tensor,
    key_blocks: torch.Tensor,
    value_blocks: torch.Tensor,
    chunk_rows: torch.Tensor,
    context_lens: torch.Tensor,
    block_tables: torch.Tensor,
    scale: float | None = None,
    key_scales: torch.Tensor | None = None,
    value_scales: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """The same in plain PyTorch, one chunk at a time in float32 (the tests' reference, any device)."""
    scale = query.shape[-1] ** -0.5 if scale is None else scale
    check_scales(key_blocks, key_scales, value_scales)
    out = torch.zeros_like(query) if out is None else out
    for (begin, end), length, table in zip(chunk_rows.tolist(), context_lens.tolist(), block_tables):
        keys, values = context_per_query_head(
            key_blocks, value_blocks, table, length, query.shape[1], key_scales, value_scales
        )
        scores = torch.einsum("nhd,lhd->hnl", query[begin:end].float(), keys) * scale
        first = length - (end - begin)
        positions = torch.arange(first, length, device=query.device).unsqueeze(1)
        hidden = torch.arange(length, device=query.device).unsqueeze(0) > positions  # [n, L]
        scores = scores.masked_fill(hidden, float("-inf"))
        out[begin:end] = torch.einsum("hnl,lhd->nhd", torch.softmax(scores, dim=-1), values).to(out.dtype)
    return out
