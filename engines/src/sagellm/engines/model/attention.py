"""Paged attention over KV-pool blocks, in plain PyTorch (CPU and CUDA)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sagellm.engines.model.attention_metadata import AttentionMetadata


def paged_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    meta: AttentionMetadata,
) -> torch.Tensor:
    """Write this step's K/V into the pool, then attend every query to its context.

    ``q`` is [T, Hq, D]; ``k``/``v`` are [T, Hkv, D]; caches are flat pool
    views [num_slots, Hkv, D]. Grouped-query attention is left to SDPA.
    """
    k_cache.index_copy_(0, meta.slot_mapping, k.to(k_cache.dtype))
    v_cache.index_copy_(0, meta.slot_mapping, v.to(v_cache.dtype))
    out = torch.empty_like(q)
    if meta.decode is not None:
        group = meta.decode
        query = q.index_select(0, group.token_idx).unsqueeze(2)  # [B, Hq, 1, D]
        keys = k_cache[group.slot_idx].to(q.dtype).transpose(1, 2)  # [B, Hkv, L, D]
        values = v_cache[group.slot_idx].to(q.dtype).transpose(1, 2)
        attended = F.scaled_dot_product_attention(query, keys, values, attn_mask=group.mask, enable_gqa=True)
        out.index_copy_(0, group.token_idx, attended.squeeze(2))
    for chunk in meta.prefills:
        query = q[chunk.begin : chunk.end].transpose(0, 1)  # [Hq, n, D]
        if chunk.slot_idx is None:
            keys = k[chunk.begin : chunk.end].transpose(0, 1)
            values = v[chunk.begin : chunk.end].transpose(0, 1)
            attended = F.scaled_dot_product_attention(query, keys, values, is_causal=True, enable_gqa=True)
        else:
            keys = k_cache[chunk.slot_idx].to(q.dtype).transpose(0, 1)
            values = v_cache[chunk.slot_idx].to(q.dtype).transpose(0, 1)
            attended = F.scaled_dot_product_attention(query, keys, values, attn_mask=chunk.mask, enable_gqa=True)
        out[chunk.begin : chunk.end] = attended.transpose(0, 1)
    return out
