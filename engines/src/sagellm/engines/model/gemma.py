"""Gemma 2 and Gemma 3 decoders: the Llama pipeline with Gemma's layer shape.

What differs from Llama, each as transformers computes it:

- embeddings are multiplied by ``sqrt(hidden_size)`` (rounded to the model dtype);
- RMSNorm scales by ``(1 + w)`` and multiplies *before* casting back
  (Llama casts, then multiplies). The ``1 +`` is folded into the weights at
  load (GGUF files store them folded already), and norm weights stay
  float32 so that the product is taken at full precision;
- four norms per layer: before and after attention, before and after the MLP;
- GeGLU (tanh-approximated GELU gate) instead of SwiGLU;
- Gemma 3: q/k norms, and sliding-window layers (five of every six) whose
  RoPE uses their own base (10,000 against 1,000,000 for the full layers);
- Gemma 2: every other layer windowed, and tanh soft-capping of attention
  scores (50) and of the final logits (30);
- the attention scale may come from ``query_pre_attn_scalar`` instead of
  ``head_dim``: the query is pre-multiplied by the ratio so every attention
  path (and fused kernel) keeps its own ``head_dim ** -0.5``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from sagellm.engines.model.attention import LayerKV
from sagellm.engines.model.attention_metadata import AttentionMetadata
from sagellm.engines.model.config import ModelConfig
from sagellm.engines.model.fused_ops import RopeInputs
from sagellm.engines.model.llama import DecoderLayer, LlamaForCausalLM, _rotary_rows, split_qkv
from sagellm.engines.model.q4_weights import Q4Weight
from sagellm.engines.model.rope import RotaryEmbedding, apply_rotary

NORM_NAMES = (
    "input_layernorm",
    "post_attention_layernorm",
    "pre_feedforward_layernorm",
    "post_feedforward_layernorm",
)


def gemma_rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """``x`` normalised and scaled by ``weight`` (already ``1 + w``, float32) in float32, then cast back."""
    x32 = x.float()
    return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps) * weight).to(x.dtype)


class GemmaDecoderLayer(DecoderLayer):
    def __init__(
        self, config: ModelConfig, weights: dict[str, torch.Tensor], index: int, q4: dict[str, Q4Weight]
    ) -> None:
        super().__init__(config, weights, index, q4)
        # Gemma 3's windowed layers rotate with the local base (the model's second table)
        self.rope_index = 1 if self.window is not None and config.local_rope_theta is not None else 0
        scale = config.attention_scale
        factor = None if scale is None else scale * config.head_dim**0.5
        self.query_factor = None if factor == 1.0 else factor  # None: head_dim ** -0.5 is the scale already

    def load_norms(self, take: Callable[[str], torch.Tensor]) -> None:
        norms = [self.norm_weight(take(f"{name}.weight")) for name in NORM_NAMES]
        self.input_norm, self.post_attn_norm, self.pre_mlp_norm, self.post_mlp_norm = norms

    @staticmethod
    def norm_weight(tensor: torch.Tensor) -> nn.Parameter:
        """float32, whatever the model dtype: Gemma multiplies by the norm before casting back."""
        return nn.Parameter(tensor.float(), requires_grad=False)

    def forward(
        self,
        hidden: torch.Tensor,
        rope: RopeInputs,
        kv_cache: LayerKV | tuple[torch.Tensor, torch.Tensor],
        meta: AttentionMetadata,
    ) -> torch.Tensor:
        cfg, eps = self.config, self.config.rms_norm_eps
        qkv = self.qkv(gemma_rms_norm(hidden, self.input_norm, eps))
        q, k, v = split_qkv(qkv, cfg)
        if self.q_norm is not None and self.k_norm is not None:
            q, k = gemma_rms_norm(q, self.q_norm, eps), gemma_rms_norm(k, self.k_norm, eps)
        cos, sin = _rotary_rows(rope, q.dtype)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if self.query_factor is not None:
            q = q * self.query_factor
        attended = self.attend(q, k, v, kv_cache, meta, cfg.attn_logit_softcap)
        attn_out = self._summed(self.o_proj(attended.reshape(-1, cfg.q_size)))
        hidden = hidden + gemma_rms_norm(attn_out, self.post_attn_norm, eps)
        gate, up = self.gate_up(gemma_rms_norm(hidden, self.pre_mlp_norm, eps)).chunk(2, dim=-1)
        mlp_out = self._summed(self.down(F.gelu(gate, approximate="tanh") * up))
        return hidden + gemma_rms_norm(mlp_out, self.post_mlp_norm, eps)


class GemmaForCausalLM(LlamaForCausalLM):
    """Gemma 2/3 over the Llama pipeline: same KV pool, kernels, speculation and quantizers."""

    layer_class = GemmaDecoderLayer

    def __init__(
        self,
        config: ModelConfig,
        weights: dict[str, torch.Tensor],
        device: torch.device,
        q4_weights: dict[str, Q4Weight] | None = None,
    ) -> None:
        weights["model.norm.weight"] = weights["model.norm.weight"].float()
        super().__init__(config, weights, device, q4_weights)

    def rotary_tables(self, config: ModelConfig, device: torch.device) -> list[RotaryEmbedding]:
        tables = super().rotary_tables(config, device)
        if config.local_rope_theta is not None:  # Gemma 3's windowed layers: their own base, never scaled
            tables.append(
                RotaryEmbedding(config.head_dim, config.max_position_embeddings, config.local_rope_theta, device)
            )
        return tables

    def embed_tokens(self, input_ids: torch.Tensor) -> torch.Tensor:
        hidden = super().embed_tokens(input_ids)
        return hidden * torch.tensor(self.config.hidden_size**0.5, dtype=hidden.dtype)

    def final_norm(self, hidden: torch.Tensor) -> torch.Tensor:
        return gemma_rms_norm(hidden, self.norm, self.config.rms_norm_eps)


def model_class(config: ModelConfig) -> type[LlamaForCausalLM]:
    """The decoder class for ``config``'s architecture."""
    return GemmaForCausalLM if config.is_gemma else LlamaForCausalLM
