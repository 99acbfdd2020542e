"""A Llama-family decoder (RMSNorm, RoPE, GQA, SwiGLU) over a paged KV pool.

Covers SmolLM2, Llama 2/3, Qwen2/2.5 (q/k/v bias), Qwen3 and Mistral;
Gemma 2/3 subclass it (gemma.py). The q/k/v and
gate/up projections are fused into one matmul each: on CPU the per-op
overhead of small matmuls is a large share of decode time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sagellm.core.errors import ModelLoadError
from sagellm.core.protocols import FusedKernel
from sagellm.engines.model.attention import FusedAttention, LayerKV, paged_attention
from sagellm.engines.model.attention_metadata import AttentionMetadata
from sagellm.engines.model.attention_window import windowed
from sagellm.engines.model.config import ModelConfig
from sagellm.engines.model.forward_args import ForwardArgs
from sagellm.engines.model.fused_ops import FusedElementwise, RopeInputs
from sagellm.engines.model.ggml_matmul import GGMLMatmul, packed_kernels
from sagellm.engines.model.ggml_weights import GGMLWeight
from sagellm.engines.model.linear import Linear
from sagellm.engines.model.parallel_ops import ParallelOps
from sagellm.engines.model.q4_weights import Q4Weight, concat_rows
from sagellm.engines.model.rope import RotaryEmbedding, apply_rotary

EMBED, HEAD = "model.embed_tokens.weight", "lm_head.weight"


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float, fused: FusedElementwise | None = None) -> torch.Tensor:
    """Normalise in float32 (as transformers does), scale in the model dtype; one fused pass when given."""
    if fused is not None:
        return fused.rms_norm(x, weight, eps)
    x32 = x.float()
    x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    return weight * x32.to(x.dtype)


def split_qkv(qkv: torch.Tensor, cfg: ModelConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A fused projection's output as q [T, Hq, D], k and v [T, Hkv, D] (views where the layout allows)."""
    q, k, v = qkv.split([cfg.q_size, cfg.kv_size, cfg.kv_size], dim=-1)
    heads = (cfg.num_heads, cfg.num_kv_heads, cfg.num_kv_heads)
    q, k, v = (part.reshape(-1, n, cfg.head_dim) for part, n in zip((q, k, v), heads))
    return q, k, v


def _rotary_rows(rope: RopeInputs, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token cos/sin [T, 1, D]: as given unfused; looked up when the fused path passed whole tables."""
    if rope.cos.dim() == 3:
        return rope.cos, rope.sin
    rows = [table.index_select(0, rope.positions).unsqueeze(1).to(dtype) for table in (rope.cos, rope.sin)]
    return rows[0], rows[1]


class DecoderLayer(nn.Module):
    def __init__(
        self, config: ModelConfig, weights: dict[str, torch.Tensor], index: int, q4: dict[str, Q4Weight]
    ) -> None:
        super().__init__()
        self.config = config
        self.window = config.layer_window(index)  # None: attends to its whole context
        self.rope_index = 0  # which of the model's RoPE tables this layer rotates with
        prefix = f"model.layers.{index}."
        take = _taker(weights, prefix)
        self.load_norms(take)
        qkv_bias = torch.cat([take(f"self_attn.{p}_proj.bias") for p in "qkv"]) if config.attention_bias else None
        self.qkv = _fused_linear(take, q4, prefix, [f"self_attn.{p}_proj.weight" for p in "qkv"], qkv_bias)
        self.q_norm = self.k_norm = None
        if config.qk_norm:
            self.q_norm = self.norm_weight(take("self_attn.q_norm.weight"))
            self.k_norm = self.norm_weight(take("self_attn.k_norm.weight"))
        self.o_proj = _fused_linear(take, q4, prefix, ["self_attn.o_proj.weight"])
        self.gate_up = _fused_linear(take, q4, prefix, ["mlp.gate_proj.weight", "mlp.up_proj.weight"])
        self.down = _fused_linear(take, q4, prefix, ["mlp.down_proj.weight"])
        self.fused_attention: FusedAttention | None = None  # set by LlamaForCausalLM.use_fused_kernels
        self.fused_ops: FusedElementwise | None = None
        self.reduce: Callable[[torch.Tensor], torch.Tensor] | None = None  # tensor parallelism's all-reduce

    def load_norms(self, take: Callable[[str], torch.Tensor]) -> None:
        """The RMSNorm weights around attention and MLP (Gemma's layer has four: gemma.py)."""
        self.input_norm = self.norm_weight(take("input_layernorm.weight"))
        self.post_norm = self.norm_weight(take("post_attention_layernorm.weight"))

    @staticmethod
    def norm_weight(tensor: torch.Tensor) -> nn.Parameter:
        """A norm's weight as the layer keeps it (here: as loaded, in the model dtype)."""
        return nn.Parameter(tensor, requires_grad=False)

    def forward(
        self,
        hidden: torch.Tensor,
        rope: RopeInputs,
        kv_cache: LayerKV | tuple[torch.Tensor, torch.Tensor],
        meta: AttentionMetadata,
    ) -> torch.Tensor:
        cfg, ops = self.config, self.fused_ops
        x = rms_norm(hidden, self.input_norm, cfg.rms_norm_eps, ops)
        qkv = self.qkv(x)
        v = qkv[:, cfg.q_size + cfg.kv_size :].view(-1, cfg.num_kv_heads, cfg.head_dim)
        if ops is not None and self.q_norm is None:
            q, k = ops.rope_qk(qkv, rope, cfg)
        else:
            q, k, _ = split_qkv(qkv, cfg)
            if self.q_norm is not None and self.k_norm is not None:
                q, k = rms_norm(q, self.q_norm, cfg.rms_norm_eps), rms_norm(k, self.k_norm, cfg.rms_norm_eps)
            cos, sin = _rotary_rows(rope, q.dtype)
            q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        attended = self.attend(q, k, v, kv_cache, meta)
        hidden = hidden + self._summed(self.o_proj(attended.reshape(-1, cfg.q_size)))
        x = rms_norm(hidden, self.post_norm, cfg.rms_norm_eps, ops)
        gate_up = self.gate_up(x)
        if ops is not None:
            return hidden + self._summed(self.down(ops.silu_mul(gate_up)))
        gate, up = gate_up.chunk(2, dim=-1)
        return hidden + self._summed(self.down(F.silu(gate) * up))

    def attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        kv_cache: LayerKV | tuple[torch.Tensor, torch.Tensor],
        meta: AttentionMetadata,
        softcap: float | None = None,
    ) -> torch.Tensor:
        """Store this step's K/V and attend, within this layer's window if it has one."""
        if self.window is not None:
            meta = windowed(meta, self.window, kv_cache[0].shape[1])
        scales = kv_cache.scales if isinstance(kv_cache, LayerKV) else None
        return paged_attention(q, k, v, kv_cache[0], kv_cache[1], meta, scales, self.fused_attention, softcap)

    def _summed(self, partial: torch.Tensor) -> torch.Tensor:
        """A row-parallel output summed over tensor-parallel ranks (itself when the model is whole)."""
        return partial if self.reduce is None else self.reduce(partial)


class LlamaForCausalLM(nn.Module):
    """Token ids + positions + attention metadata in, logits of chosen rows out."""

    layer_class: type[DecoderLayer] = DecoderLayer

    def __init__(
        self,
        config: ModelConfig,
        weights: dict[str, torch.Tensor],
        device: torch.device,
        q4_weights: dict[str, Q4Weight] | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        take = _taker(weights, "")
        q4 = q4_weights or {}
        # A table kept as GGML blocks (Q6_K, Q8_0, ...) is looked up row by row, never made dense: for a
        # 150K-262K vocabulary the dense float32 table alone is as large as the whole file.
        embed_blocks = serving_blocks(q4, EMBED, device)
        self.embed_table = None if embed_blocks is None else GGMLMatmul([embed_blocks], packed_kernels())
        self.embed = nn.Parameter(take_dense(weights, EMBED, embed_blocks), requires_grad=False)
        self.layers = nn.ModuleList(self.layer_class(config, weights, i, q4) for i in range(config.num_layers))
        self.norm = nn.Parameter(take("model.norm.weight"), requires_grad=False)
        untied = not config.tie_word_embeddings and HEAD in weights
        head_blocks = serving_blocks(q4, HEAD if untied else EMBED, device)
        lm_head = take_dense(weights, HEAD, head_blocks) if untied else None
        if not untied and HEAD in weights:  # a tied config's stray copy: dropped unread
            del weights[HEAD]
        self.to(device)
        # Made after the move, so a tied head shares the embedding's storage on the device instead of copying it;
        # a Linear, so a quantizer can swap it like the decoder's linears (see quantize.py). A head whose
        # blocks serve (see ggml_matmul.py) holds only them.
        head_weight = self.embed.detach() if lm_head is None else lm_head.to(device)
        self.lm_head = Linear(head_weight, ggml=None if head_blocks is None else [head_blocks])
        # 4-bit kernels for small batches where the checkpoint's weights are 4-bit (see linear.py).
        self.num_low_bit_linears = sum(m.pack_low_bit() for m in self.layers.modules() if isinstance(m, Linear))
        # A head that came without serving blocks gets an int8 copy for small batches in a low-bit model.
        self.int8_head = self.lm_head.pack_low_bit() or (self.num_low_bit_linears > 0 and self.lm_head.pack_int8_rows())
        self.rotaries = self.rotary_tables(config, device)
        self.fused_ops: FusedElementwise | None = None
        self.parallel: ParallelOps | None = None  # set by use_tensor_parallel on every rank
        self.mirror: Callable[[ForwardArgs], None] | None = None  # rank 0: hands each forward's inputs to the others
        self.max_kv_blocks: int | None = None  # the other ranks' pool size: no engine over this model may use more

    def rotary_tables(self, config: ModelConfig, device: torch.device) -> list[RotaryEmbedding]:
        """The RoPE tables the layers index by their ``rope_index`` (one here; Gemma 3 has two)."""
        return [
            RotaryEmbedding(
                config.head_dim, config.max_position_embeddings, config.rope_theta, device, config.rope_scaling
            )
        ]

    def embed_tokens(self, input_ids: torch.Tensor) -> torch.Tensor:
        if self.embed_table is not None:
            return self.embed_table.rows(input_ids, self.embed.dtype)
        parallel = self.parallel
        return F.embedding(input_ids, self.embed) if parallel is None else parallel.embed(input_ids, self.embed)

    def final_norm(self, hidden: torch.Tensor) -> torch.Tensor:
        return rms_norm(hidden, self.norm, self.config.rms_norm_eps, self.fused_ops)

    def use_fused_kernels(self, kernels: FusedKernel) -> list[str]:
        """Route what ``kernels`` (a registry FusedKernel set) offers into the layers; returns the ops used."""
        attention = FusedAttention.offered_by(kernels)
        elementwise = FusedElementwise.offered_by(kernels, self.embed)
        for layer in self.layers:
            layer.fused_attention, layer.fused_ops = attention, elementwise
        self.fused_ops = elementwise
        return ([] if attention is None else attention.ops_used) + (
            [] if elementwise is None else list(elementwise.OPS)
        )

    def use_ggml_activations(self, kind: str) -> None:
        """``"int8"``: the linears kept as GGML blocks quantize their few-row inputs per 32 (llama.cpp's
        activations); ``"float32"``: they keep them float (see ggml_matmul.py)."""
        for module in self.modules():
            if isinstance(module, Linear) and module.ggml is not None:
                module.ggml.int8_activations = kind == "int8"

    def use_tensor_parallel(self, ops: ParallelOps) -> None:
        """Join this rank's shard (built from ``TensorShard.cut`` weights) to the others through ``ops``."""
        self.parallel = ops
        for layer in self.layers:
            layer.reduce = ops.all_reduce

    @property
    def dtype(self) -> torch.dtype:
        return self.embed.dtype

    @torch.inference_mode()
    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        meta: AttentionMetadata,
        kv_caches: Sequence[LayerKV | tuple[torch.Tensor, torch.Tensor]],
        logits_idx: torch.Tensor,
        layers: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """Logits of the ``logits_idx`` rows; ``layers``: run only these decoder layers (self speculation's
        draft), with ``kv_caches`` one per layer run."""
        if self.mirror is not None:
            self.mirror(ForwardArgs(input_ids, positions, meta, logits_idx, layers))
        parallel = self.parallel
        hidden = self.embed_tokens(input_ids)
        ropes = [self._rope_inputs(rotary, positions, hidden.dtype) for rotary in self.rotaries]
        run = self.layers if layers is None else [self.layers[i] for i in layers]
        for layer, kv_cache in zip(run, kv_caches):
            hidden = layer(hidden, ropes[layer.rope_index], kv_cache, meta)
        logits = self.lm_head(self.final_norm(hidden.index_select(0, logits_idx)))
        logits = (logits if parallel is None else parallel.gather_logits(logits)).float()
        cap = self.config.final_logit_softcap
        return logits if cap is None else torch.tanh(logits / cap) * cap

    def _rope_inputs(self, rotary: RotaryEmbedding, positions: torch.Tensor, dtype: torch.dtype) -> RopeInputs:
        if self.fused_ops is not None:  # the fused RoPE indexes the float32 tables itself
            return RopeInputs(positions, rotary.cos, rotary.sin)
        return RopeInputs(positions, *rotary.tables(positions, dtype))


def _fused_linear(
    take: Callable[[str], torch.Tensor],
    q4: dict[str, Q4Weight],
    prefix: str,
    names: list[str],
    bias: torch.Tensor | None = None,
) -> Linear:
    """One Linear over weights stacked along N; 4-bit codes kept only when every part has them, and no dense
    weight at all when every part is GGML blocks kept packed (its entries in ``weights`` are then not read)."""
    parts = [q4[prefix + name] for name in names if prefix + name in q4]
    if parts and len(parts) == len(names) and all(isinstance(p, GGMLWeight) for p in parts):
        return Linear(torch.empty(0, dtype=parts[0].dtype), bias, ggml=parts)  # type: ignore[arg-type]
    codes = concat_rows(parts) if len(parts) == len(names) and all(isinstance(p, Q4Weight) for p in parts) else None
    return Linear(torch.cat([take(name) for name in names], dim=0), bias, codes)


def serving_blocks(q4: Mapping[str, object], name: str, device: torch.device) -> GGMLWeight | None:
    """``name``'s GGML blocks where the packed kernels can serve them (CPU, compiled); else None."""
    blocks = q4.get(name)
    if not isinstance(blocks, GGMLWeight) or device.type != "cpu" or packed_kernels() is None:
        return None
    return blocks


def take_dense(weights: dict[str, torch.Tensor], name: str, blocks: GGMLWeight | None) -> torch.Tensor:
    """Pop ``name``'s dense tensor, or, where its ``blocks`` serve instead, an empty one of the model dtype
    (read without ever dequantizing the table)."""
    if name not in weights:
        raise ModelLoadError(f"checkpoint lacks tensor {name}")
    if blocks is None:
        return weights.pop(name)
    del weights[name]  # a DequantizingWeights entry: deleting never dequantizes
    return torch.empty(0, dtype=blocks.dtype)


def _taker(weights: dict[str, torch.Tensor], prefix: str) -> Callable[[str], torch.Tensor]:
    """Pop named tensors, failing with the checkpoint's missing name."""

    def take(name: str) -> torch.Tensor:
        full = prefix + name
        if full not in weights:
            raise ModelLoadError(f"checkpoint lacks tensor {full}")
        return weights.pop(full)

    return take
