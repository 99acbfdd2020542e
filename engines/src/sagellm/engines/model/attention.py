"""Paged attention over KV-pool blocks, in plain PyTorch (CPU and CUDA).

Half-precision decode queries are attended with explicit batched matmuls
rather than ``scaled_dot_product_attention``: for one bf16 query token per
sequence the CPU SDPA kernels (flash, grouped-query) cost 3-15x more than
two batched matmuls plus a float32 softmax (measured on 64 sequences x 200
tokens; see ``_decode_block_diagonal`` for the layout trick). In float32 SDPA is as fast and is what transformers runs,
which keeps logits within 1e-4 of it, so fp32 decode stays on SDPA. Prefill
chunks have many queries and go to SDPA, whose flash kernel wins there
when its inputs are contiguous.

A fused-kernel set from the registry (``--kernel-fusion cpu``: sagellm-kernel-fusion)
may take over half-precision decode: its ``paged_decode_attention`` reads
K/V from the blocks in place, with no gathered copy and no block-diagonal
padding (see :class:`FusedAttention`), over float caches and over int8 codes
with their per-block scales.

int8 caches (``kv_pool.cache_dtype: int8``) take the same paths: writes
quantize into the blocks and raise per-block scales (``kv_int8.py``);
prefill and float32 gathers dequantize the blocks they read, and
half-precision decode (fused, or the PyTorch block-diagonal path) feeds the
codes in and applies the block scales to scores and probabilities. Float
caches pass ``scales=None`` and run exactly the code they ran before.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from sagellm.core.protocols import FusedKernel, KVQuantizeKernels, PagedAttentionKernels
from sagellm.engines.model.attention_metadata import AttentionMetadata, DecodeGroup, PrefillChunk, PrefillGroup
from sagellm.engines.model.kv_int8 import KVScales, dequantize, gather_codes, write_quantized


class FusedAttention:
    """A registry fused-kernel set's paged attention ops, used where they serve the inputs.

    The set's :class:`~sagellm.core.protocols.PagedAttentionKernels` take
    decode queries and, in one call, all of a step's prefill chunks; its
    :class:`~sagellm.core.protocols.KVQuantizeKernels`, where it has them,
    write int8 caches in one pass. float32 uses them too: CPUs without bf16
    instructions run float32 by default, and the kernels keep float32
    logits within the token-exact tests' bound (``test_token_exact.py``
    runs them). int8 caches pass their per-block scales along.
    """

    OP = "paged_decode_attention"
    PREFILL_OP = "paged_prefill_attention"
    WRITE_OP = "quantize_kv"

    def __init__(self, kernels: PagedAttentionKernels) -> None:
        self.kernels = kernels
        self.writer: KVQuantizeKernels | None = kernels if isinstance(kernels, KVQuantizeKernels) else None

    @property
    def ops_used(self) -> list[str]:
        return [self.OP, self.PREFILL_OP, *([self.WRITE_OP] if self.writer is not None else [])]

    @classmethod
    def offered_by(cls, kernels: FusedKernel) -> FusedAttention | None:
        return cls(kernels) if isinstance(kernels, PagedAttentionKernels) else None

    def serves(self, query: torch.Tensor, key_blocks: torch.Tensor, group: DecodeGroup) -> bool:
        return group.context_lens is not None and bool(self.kernels.serves(self.OP, query, key_blocks))

    def __call__(
        self,
        query: torch.Tensor,
        key_blocks: torch.Tensor,
        value_blocks: torch.Tensor,
        group: DecodeGroup,
        scales: KVScales | None = None,
    ) -> torch.Tensor:
        assert group.context_lens is not None  # serves() checked it
        key_scales, value_scales = (None, None) if scales is None else (scales.key, scales.value)
        out: torch.Tensor = self.kernels.paged_decode_attention(
            query,
            key_blocks,
            value_blocks,
            group.block_table,
            group.context_lens,
            key_scales=key_scales,
            value_scales=value_scales,
        )
        return out

    def serves_prefill(self, query: torch.Tensor, key_blocks: torch.Tensor) -> bool:
        return query.dtype != torch.float32 and bool(self.kernels.serves(self.PREFILL_OP, query, key_blocks))

    def prefill(
        self,
        query: torch.Tensor,
        key_blocks: torch.Tensor,
        value_blocks: torch.Tensor,
        group: PrefillGroup,
        out: torch.Tensor,
        scales: KVScales | None = None,
    ) -> None:
        """Attend every prefill chunk's rows of ``query`` [T, Hq, D] into the same rows of ``out``."""
        key_scales, value_scales = (None, None) if scales is None else (scales.key, scales.value)
        self.kernels.paged_prefill_attention(
            query,
            key_blocks,
            value_blocks,
            group.chunk_rows,
            group.context_lens,
            group.block_table,
            out=out,
            key_scales=key_scales,
            value_scales=value_scales,
        )

    def quantize_kv(self, codes: torch.Tensor, scales: torch.Tensor, slots: torch.Tensor, values: torch.Tensor) -> bool:
        """Write ``values`` [P, T, H, D] into int8 ``codes`` [P, N, bs, H, D] / ``scales`` [P, N]; False: not served."""
        if self.writer is None or not self.writer.serves(self.WRITE_OP, codes, values):
            return False
        self.writer.quantize_kv(codes, scales, slots, values)
        return True


class LayerKV(NamedTuple):
    """One layer's KV cache as the pool lays it out: block views (no copy), plus int8 scales.

    A plain ``(key_blocks, value_blocks)`` pair is a float cache too.
    """

    key_blocks: torch.Tensor  # [num_blocks, block_size, Hkv, D]
    value_blocks: torch.Tensor
    scales: KVScales | None = None  # int8 caches: the per-block scales of K and V


def paged_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_blocks: torch.Tensor,
    value_blocks: torch.Tensor,
    meta: AttentionMetadata,
    scales: KVScales | None = None,
    fused: FusedAttention | None = None,
    softcap: float | None = None,
) -> torch.Tensor:
    """Write this step's K/V into the pool, then attend every query to its context.

    ``q`` is [T, Hq, D]; ``k``/``v`` are [T, Hkv, D]; the caches are the
    pool's block views [num_blocks, block_size, Hkv, D]; ``scales`` are an
    int8 cache's per-block scales (None: a float cache); ``softcap`` (Gemma 2)
    bounds the scores by ``cap * tanh(score / cap)``, which no fused kernel or
    SDPA does, so such layers attend eagerly.
    """
    if softcap is not None:
        fused = None
    if scales is None:
        write_kv(k, v, key_blocks, value_blocks, meta.slot_mapping)
    else:
        write_quantized(k, v, key_blocks, value_blocks, scales, meta, fused)
    if meta.decode is not None and not meta.prefills:
        # pure decode step: rows are in order
        return decode_attention(q, key_blocks, value_blocks, meta.decode, scales, fused, softcap)
    out = torch.empty_like(q)
    if meta.decode is not None:
        group = meta.decode
        query = q.index_select(0, group.token_idx)
        attended = decode_attention(query, key_blocks, value_blocks, group, scales, fused, softcap)
        out.index_copy_(0, group.token_idx, attended)
    if fused is not None and meta.prefill_group is not None and fused.serves_prefill(q, key_blocks):
        fused.prefill(q, key_blocks, value_blocks, meta.prefill_group, out, scales)
        return out
    for chunk in meta.prefills:
        out[chunk.begin : chunk.end] = prefill_attention(q, k, v, key_blocks, value_blocks, chunk, scales, softcap)
    return out


def write_kv(
    k: torch.Tensor, v: torch.Tensor, key_blocks: torch.Tensor, value_blocks: torch.Tensor, slots: torch.Tensor
) -> None:
    """Store each new token's K/V at its slot (a flat view of the blocks: no copy)."""
    flat_shape = (-1, *key_blocks.shape[2:])
    key_blocks.view(flat_shape).index_copy_(0, slots, k.to(key_blocks.dtype))
    value_blocks.view(flat_shape).index_copy_(0, slots, v.to(value_blocks.dtype))


def gather_context(
    blocks: torch.Tensor, block_table: torch.Tensor, dtype: torch.dtype, scales: torch.Tensor | None = None
) -> torch.Tensor:
    """[B, num_blocks * block_size, Hkv, D] context of each row of ``block_table`` ([B, num_blocks]).

    ``scales`` ([num_blocks] of the whole cache) marks ``blocks`` as int8 codes: the
    gathered blocks are dequantized, each by its own scale.
    """
    batch, num_blocks = block_table.shape
    ids = block_table.reshape(-1)
    if scales is None:
        gathered = blocks.index_select(0, ids).to(dtype)
    else:
        gathered = dequantize(gather_codes(blocks, 0, ids), scales.index_select(0, ids), dtype)
    return gathered.view(batch, num_blocks * blocks.shape[1], *blocks.shape[2:])


def decode_attention(
    query: torch.Tensor,
    key_blocks: torch.Tensor,
    value_blocks: torch.Tensor,
    group: DecodeGroup,
    scales: KVScales | None = None,
    fused: FusedAttention | None = None,
    softcap: float | None = None,
) -> torch.Tensor:
    """One query per sequence: [B, Hq, D] -> [B, Hq, D]."""
    if fused is not None and fused.serves(query, key_blocks, group):
        return fused(query, key_blocks, value_blocks, group, scales)
    if scales is not None and query.dtype != torch.float32 and softcap is None:
        return _decode_int8_block_diagonal(query, key_blocks, value_blocks, group, scales)
    key_scales, value_scales = (None, None) if scales is None else (scales.key, scales.value)
    keys = gather_context(key_blocks, group.block_table, query.dtype, key_scales)  # [B, L, Hkv, D]
    values = gather_context(value_blocks, group.block_table, query.dtype, value_scales)
    if softcap is not None:
        attended = eager_attention(
            query.unsqueeze(2), keys.transpose(1, 2), values.transpose(1, 2), group.mask_bias, softcap
        )
        return attended.squeeze(2)
    if query.dtype == torch.float32:
        return _decode_sdpa(query, keys, values, group.mask_bias)
    return _decode_block_diagonal(query, keys, values, group.mask_bias)


def _decode_int8_block_diagonal(
    query: torch.Tensor, key_blocks: torch.Tensor, value_blocks: torch.Tensor, group: DecodeGroup, scales: KVScales
) -> torch.Tensor:
    """Half-precision decode over int8 blocks without dequantizing them first.

    The codes (|code| <= 127: exact in bf16 and fp16) go into the matmuls as
    they are and each position's block scale is applied to the small
    [B, Hq, L] score and probability matrices instead of the [B, L, Hkv, D]
    context: ``q . (c * s) = s * (q . c)`` and ``sum p * (c * s) = sum (p * s) * c``.
    That saves two full passes over the context per layer, and the key
    scale multiplies float32 scores rather than rounded bf16 keys.
    """
    table = group.block_table
    if scales.codes is not None:  # K and V side by side: one gather and one conversion for both
        batch, num_blocks = table.shape
        both = gather_codes(scales.codes, 1, table.reshape(-1)).to(query.dtype)
        keys, values = both.view(2, batch, num_blocks * key_blocks.shape[1], *key_blocks.shape[2:]).unbind(0)
    else:
        keys = _gather_codes_as(key_blocks, table, query.dtype)
        values = _gather_codes_as(value_blocks, table, query.dtype)
    key_scale, value_scale = scales.per_position(table, key_blocks.shape[1])
    return _decode_block_diagonal(query, keys, values, group.mask_bias, key_scale, value_scale)


def _decode_sdpa(
    query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask_bias: torch.Tensor | None
) -> torch.Tensor:
    batch, num_q_heads, head_dim = query.shape
    attended = F.scaled_dot_product_attention(
        query.unsqueeze(2),
        keys.transpose(1, 2).contiguous(),
        values.transpose(1, 2).contiguous(),
        attn_mask=mask_bias,
        enable_gqa=True,
    )
    return attended.view(batch, num_q_heads, head_dim)


def _gather_codes_as(blocks: torch.Tensor, block_table: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``gather_context`` of int8 codes as ``dtype`` numbers, not yet scaled."""
    batch, num_blocks = block_table.shape
    gathered = gather_codes(blocks, 0, block_table.reshape(-1)).to(dtype)
    return gathered.view(batch, num_blocks * blocks.shape[1], *blocks.shape[2:])


def _decode_block_diagonal(
    query: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    mask_bias: torch.Tensor | None,
    key_scale: torch.Tensor | None = None,
    value_scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """Grouped-query decode as two batched matmuls over the gathered KV as it lies.

    Query heads ``h * G .. h * G + G - 1`` share KV head ``h`` (transformers'
    ``repeat_kv`` order). Rather than transposing K and V to head-major (a
    copy of the whole context per layer), each query is spread over a
    block-diagonal [Hq, Hkv * D] matrix, zero outside its own KV head::

        q  (head h, group g)  ->  row h*G+g:  [0 .. 0 | q | 0 .. 0]
                                                  ^ columns h*D .. h*D+D-1
        scores = Q_bd @ K^T        K: [L, Hkv*D], the gathered rows as they are
        out    = diag_h(P @ V)     V: [L, Hkv*D]; keep each row's own head block

    The matmuls do Hkv times the multiply-adds, which are cheap here, and
    read K and V once in place: 2.2x faster than transposing at 64 sequences
    x 256 tokens in bf16 (1.7x at 1,008), with bit-identical results (the
    extra terms are exact zeros).

    ``key_scale`` / ``value_scale`` ([B, L] float32) are given when K and V
    are int8 codes: they scale each position's scores and probabilities.
    """
    batch, num_q_heads, head_dim = query.shape
    context, num_kv_heads = keys.shape[1], keys.shape[2]
    group_size = num_q_heads // num_kv_heads
    own_head = torch.eye(num_kv_heads, dtype=query.dtype, device=query.device).view(1, num_kv_heads, 1, num_kv_heads, 1)
    spread = (query.view(batch, num_kv_heads, group_size, 1, head_dim) * own_head).view(batch, num_q_heads, -1)
    flat_keys = keys.view(batch, context, -1)  # [B, L, Hkv * D]
    scores = torch.bmm(spread, flat_keys.transpose(1, 2)).float() * head_dim**-0.5  # [B, Hq, L]
    if key_scale is not None:
        scores *= key_scale.view(batch, 1, context)
    if mask_bias is not None:
        scores += mask_bias.view(batch, 1, context)
    probs = torch.softmax(scores, dim=-1)
    if value_scale is not None:
        probs *= value_scale.view(batch, 1, context)
    probs = probs.to(values.dtype)
    full = torch.bmm(probs, values.view(batch, context, -1))  # [B, Hq, Hkv * D]
    per_head = full.view(batch, num_kv_heads, group_size, num_kv_heads, head_dim)
    own = torch.diagonal(per_head, dim1=1, dim2=3)  # [B, G, D, Hkv]
    return own.permute(0, 3, 1, 2).reshape(batch, num_q_heads, head_dim)


def prefill_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_blocks: torch.Tensor,
    value_blocks: torch.Tensor,
    chunk: PrefillChunk,
    scales: KVScales | None = None,
    softcap: float | None = None,
) -> torch.Tensor:
    """Causal attention of one chunk's queries, [n, Hq, D] -> [n, Hq, D].

    Inputs go in as contiguous 4-D [1, H, n, D]: on CPU, SDPA's flash kernel
    takes only that shape, and 3-D or transposed inputs fall back to the
    unfused math path (10x slower on a 1,016-token bf16 prompt: 208 ms
    against 20 ms per layer).
    """
    query = _heads_first(q[chunk.begin : chunk.end])
    if chunk.block_table is None:  # the chunk is its whole context
        keys = _heads_first(k[chunk.begin : chunk.end])
        values = _heads_first(v[chunk.begin : chunk.end])
        if softcap is not None:
            mask = chunk.mask if chunk.mask is not None else _causal(query.shape[2], q.device)
            attended = eager_attention(query, keys, values, _bias(mask), softcap)
        elif chunk.mask is None:
            attended = F.scaled_dot_product_attention(query, keys, values, is_causal=True, enable_gqa=True)
        else:  # a sliding window narrows the causal mask (attention_window.py)
            attended = F.scaled_dot_product_attention(query, keys, values, attn_mask=chunk.mask, enable_gqa=True)
    else:
        table = chunk.block_table.unsqueeze(0)
        key_scales, value_scales = (None, None) if scales is None else (scales.key, scales.value)
        keys = _heads_first(gather_context(key_blocks, table, q.dtype, key_scales)[0, : chunk.context_len])
        values = _heads_first(gather_context(value_blocks, table, q.dtype, value_scales)[0, : chunk.context_len])
        if softcap is not None and chunk.mask is not None:
            attended = eager_attention(query, keys, values, _bias(chunk.mask), softcap)
        else:
            attended = F.scaled_dot_product_attention(query, keys, values, attn_mask=chunk.mask, enable_gqa=True)
    return attended[0].transpose(0, 1)


def _heads_first(x: torch.Tensor) -> torch.Tensor:
    """[n, H, D] -> contiguous [1, H, n, D], the layout SDPA's CPU flash kernel accepts."""
    return x.transpose(0, 1).unsqueeze(0).contiguous()


def eager_attention(
    query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, bias: torch.Tensor | None, softcap: float
) -> torch.Tensor:
    """Soft-capped attention, op for op as transformers' eager Gemma 2: [B, Hq, n, D] over [B, Hkv, L, D].

    ``bias`` broadcasts to [B, Hq, n, L] (0 where allowed, -inf elsewhere).
    """
    group = query.shape[1] // keys.shape[1]
    keys, values = keys.repeat_interleave(group, dim=1), values.repeat_interleave(group, dim=1)
    scores = torch.matmul(query, keys.transpose(2, 3)) * query.shape[-1] ** -0.5
    scores = torch.tanh(scores / softcap) * softcap
    if bias is not None:
        scores = scores + bias
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    return torch.matmul(probs, values)


def _causal(length: int, device: torch.device) -> torch.Tensor:
    positions = torch.arange(length, device=device)
    return positions.unsqueeze(0) <= positions.unsqueeze(1)


def _bias(allowed: torch.Tensor) -> torch.Tensor:
    """A boolean mask as an additive float32 bias."""
    return torch.zeros(allowed.shape, dtype=torch.float32, device=allowed.device).masked_fill_(~allowed, float("-inf"))
