"""A small decoder layer's matmuls with seeded weights: the compute the scenarios overlap.

Shapes default to SmolLM2-135M (hidden 576, 9 query heads and 3 KV heads
of 64, MLP 1536), the model the engines serve, so the matmuls are the size
a real decode or prefill step runs. No checkpoint is needed: the weights
are seeded, since only the timing and the bit-equality of outputs matter.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True, slots=True)
class LayerShape:
    hidden: int = 576
    intermediate: int = 1536
    num_heads: int = 9
    num_kv_heads: int = 3
    head_dim: int = 64

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_dim


def rms_norm(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Keeps activations bounded over many layers, so equality checks compare finite numbers."""
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


class DecoderLayer:
    """One layer: fused QKV, attention over a given KV, output projection, gated MLP."""

    def __init__(self, shape: LayerShape, seed: int, dtype: torch.dtype = torch.float32) -> None:
        gen = torch.Generator().manual_seed(seed)
        scale = shape.hidden**-0.5

        def weight(rows: int, cols: int) -> torch.Tensor:
            w: torch.Tensor = torch.randn(rows, cols, generator=gen) * scale
            return w.to(dtype)

        self.shape = shape
        self.w_qkv = weight(shape.hidden, shape.hidden + 2 * shape.kv_dim)
        self.w_o = weight(shape.hidden, shape.hidden)
        self.w_gate_up = weight(shape.hidden, 2 * shape.intermediate)
        self.w_down = weight(shape.intermediate, shape.hidden)

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(q, k, v)`` of ``x`` [tokens, hidden]: q [tokens, hidden], k and v [tokens, kv_dim]."""
        s = self.shape
        qkv = rms_norm(x) @ self.w_qkv
        return qkv[:, : s.hidden], qkv[:, s.hidden : s.hidden + s.kv_dim], qkv[:, s.hidden + s.kv_dim :]

    def mlp(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = (rms_norm(x) @ self.w_gate_up).chunk(2, dim=-1)
        return x + (F.silu(gate) * up) @ self.w_down

    def decode(self, x: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor) -> torch.Tensor:
        """One decode token per sequence: ``x`` [batch, hidden] attends to k/v [batch, tokens, kv_heads, head_dim]."""
        s = self.shape
        q, _, _ = self.project(x)
        q = q.view(x.shape[0], s.num_kv_heads, s.num_heads // s.num_kv_heads, s.head_dim)
        scores = torch.einsum("bkgd,btkd->bkgt", q, k_cache) * s.head_dim**-0.5
        attn = torch.einsum("bkgt,btkd->bkgd", scores.softmax(-1), v_cache)
        return self.mlp(x + attn.reshape(x.shape[0], s.hidden) @ self.w_o)

    def prefill(
        self, x: torch.Tensor, past_k: torch.Tensor | None = None, past_v: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Causal attention of the new tokens ``x`` [tokens, hidden] over a cached prefix and themselves.

        ``past_k``/``past_v`` [prefix, kv_dim] are the prefix's KV (a
        prefix-cache hit: its tokens are not recomputed). Returns ``(out, k,
        v)``, k/v the new tokens' KV to ship.
        """
        s = self.shape
        q, k, v = self.project(x)
        tokens = x.shape[0]
        prefix = 0 if past_k is None or past_v is None else past_k.shape[0]
        all_k = k if past_k is None else torch.cat([past_k, k])
        all_v = v if past_v is None else torch.cat([past_v, v])
        rep = s.num_heads // s.num_kv_heads
        qh = q.reshape(tokens, s.num_heads, s.head_dim).transpose(0, 1)
        kh = all_k.reshape(-1, s.num_kv_heads, s.head_dim).transpose(0, 1).repeat_interleave(rep, 0)
        vh = all_v.reshape(-1, s.num_kv_heads, s.head_dim).transpose(0, 1).repeat_interleave(rep, 0)
        if prefix:  # token i sees the whole prefix and new tokens 0..i (is_causal aligns top-left)
            mask = torch.ones(tokens, prefix + tokens, dtype=torch.bool).tril(diagonal=prefix)
            attn = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=mask)
        else:
            attn = F.scaled_dot_product_attention(qh, kh, vh, is_causal=True)
        out = self.mlp(x + attn.transpose(0, 1).reshape(tokens, s.hidden) @ self.w_o)
        return out, k.contiguous(), v.contiguous()


def make_layers(
    shape: LayerShape, num_layers: int, seed: int = 0, dtype: torch.dtype = torch.float32
) -> list[DecoderLayer]:
    return [DecoderLayer(shape, seed + i, dtype) for i in range(num_layers)]
