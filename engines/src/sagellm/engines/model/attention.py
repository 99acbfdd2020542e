"""Paged attention over KV-pool blocks, in plain PyTorch (CPU and CUDA).

Half-precision decode queries are attended with explicit batched matmuls
rather than ``scaled_dot_product_attention``: for one bf16 query token per
sequence the CPU SDPA kernels (flash, grouped-query) cost 3-15x more than
two small ``matmul`` calls plus a float32 softmax (measured on 64 sequences
x 200 tokens). In float32 SDPA is as fast and is what transformers runs,
which keeps logits within 1e-4 of it, so fp32 decode stays on SDPA. Prefill
chunks have many queries and go to SDPA, whose flash kernel wins there
when its inputs are contiguous.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sagellm.engines.model.attention_metadata import AttentionMetadata, DecodeGroup, PrefillChunk


def paged_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_blocks: torch.Tensor,
    value_blocks: torch.Tensor,
    meta: AttentionMetadata,
) -> torch.Tensor:
    """Write this step's K/V into the pool, then attend every query to its context.

    ``q`` is [T, Hq, D]; ``k``/``v`` are [T, Hkv, D]; the caches are the
    pool's block views [num_blocks, block_size, Hkv, D].
    """
    write_kv(k, v, key_blocks, value_blocks, meta.slot_mapping)
    if meta.decode is not None and not meta.prefills:
        return decode_attention(q, key_blocks, value_blocks, meta.decode)  # pure decode step: rows are in order
    out = torch.empty_like(q)
    if meta.decode is not None:
        group = meta.decode
        attended = decode_attention(q.index_select(0, group.token_idx), key_blocks, value_blocks, group)
        out.index_copy_(0, group.token_idx, attended)
    for chunk in meta.prefills:
        out[chunk.begin : chunk.end] = prefill_attention(q, k, v, key_blocks, value_blocks, chunk)
    return out


def write_kv(
    k: torch.Tensor, v: torch.Tensor, key_blocks: torch.Tensor, value_blocks: torch.Tensor, slots: torch.Tensor
) -> None:
    """Store each new token's K/V at its slot (a flat view of the blocks: no copy)."""
    flat_shape = (-1, *key_blocks.shape[2:])
    key_blocks.view(flat_shape).index_copy_(0, slots, k.to(key_blocks.dtype))
    value_blocks.view(flat_shape).index_copy_(0, slots, v.to(value_blocks.dtype))


def gather_context(blocks: torch.Tensor, block_table: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[B, Hkv, num_blocks * block_size, D] context of each row of ``block_table`` ([B, num_blocks])."""
    batch, num_blocks = block_table.shape
    gathered = blocks.index_select(0, block_table.reshape(-1)).to(dtype)
    return gathered.view(batch, num_blocks * blocks.shape[1], *blocks.shape[2:]).transpose(1, 2)


def decode_attention(
    query: torch.Tensor, key_blocks: torch.Tensor, value_blocks: torch.Tensor, group: DecodeGroup
) -> torch.Tensor:
    """One query per sequence: [B, Hq, D] -> [B, Hq, D].

    Query heads ``h * G .. h * G + G - 1`` share KV head ``h`` (transformers'
    ``repeat_kv`` order), so viewing the queries as [B, Hkv, G, D] turns
    grouped-query attention into plain batched matmuls with no KV copy.
    """
    batch, num_q_heads, head_dim = query.shape
    keys = gather_context(key_blocks, group.block_table, query.dtype)  # [B, Hkv, L, D]
    values = gather_context(value_blocks, group.block_table, query.dtype)
    if query.dtype == torch.float32:
        attended = F.scaled_dot_product_attention(
            query.unsqueeze(2), keys.contiguous(), values.contiguous(), attn_mask=group.mask_bias, enable_gqa=True
        )
        return attended.view(batch, num_q_heads, head_dim)
    grouped = query.view(batch, keys.shape[1], -1, head_dim)  # [B, Hkv, G, D]
    scores = torch.matmul(grouped, keys.transpose(-1, -2)).float() * head_dim**-0.5  # [B, Hkv, G, L]
    if group.mask_bias is not None:
        scores += group.mask_bias
    probs = torch.softmax(scores, dim=-1).to(values.dtype)
    return torch.matmul(probs, values).view(batch, num_q_heads, head_dim)


def prefill_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_blocks: torch.Tensor,
    value_blocks: torch.Tensor,
    chunk: PrefillChunk,
) -> torch.Tensor:
    """Causal attention of one chunk's queries, [n, Hq, D] -> [n, Hq, D].

    Inputs are made contiguous: on CPU, SDPA falls back from its flash
    kernel to the unfused math path (3x slower on a 1k-token prompt) for
    transposed views.
    """
    query = q[chunk.begin : chunk.end].transpose(0, 1).contiguous()  # [Hq, n, D]
    if chunk.block_table is None:  # the chunk is its whole context
        keys = k[chunk.begin : chunk.end].transpose(0, 1).contiguous()
        values = v[chunk.begin : chunk.end].transpose(0, 1).contiguous()
        attended = F.scaled_dot_product_attention(query, keys, values, is_causal=True, enable_gqa=True)
    else:
        table = chunk.block_table.unsqueeze(0)
        keys = gather_context(key_blocks, table, q.dtype)[0, :, : chunk.context_len].contiguous()
        values = gather_context(value_blocks, table, q.dtype)[0, :, : chunk.context_len].contiguous()
        attended = F.scaled_dot_product_attention(query, keys, values, attn_mask=chunk.mask, enable_gqa=True)
    return attended.transpose(0, 1)
