"""Gemma 2/3 fields of a GGUF file, as llama.cpp reads them.

llama.cpp's converter writes Gemma's norm weights with the ``1 +`` already
added, and its tensor names differ from Llama's in the norms: ``ffn_norm``
is the norm *before* the MLP (Llama's post-attention norm), and Gemma adds
``post_attention_norm`` and ``post_ffw_norm``. What the file does not
store, llama.cpp fixes per architecture, and so do we:

- windowed layers: Gemma 2 every other one starting with the first;
  Gemma 3 five of every six (``sliding_window_pattern`` when the file has it);
- Gemma 3's windowed layers use RoPE base 10,000;
- the attention scale is ``head_dim ** -0.5`` except for the 27B models,
  whose ``query_pre_attn_scalar`` is ``hidden_size / heads``.
"""

from __future__ import annotations

from typing import Any

from sagellm.engines.model.gemma_layout import LOCAL_ROPE_THETA, WINDOW_PATTERN, opt_float, windowed_layers

GEMMA_NORM_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "post_attention_norm.weight": "post_attention_layernorm.weight",
    "ffn_norm.weight": "pre_feedforward_layernorm.weight",
    "post_ffw_norm.weight": "post_feedforward_layernorm.weight",
}
LAYERS_OF_27B = {"gemma2": 46, "gemma3": 62}


def gemma_fields(metadata: dict[str, Any], arch: str) -> dict[str, Any]:
    """The :class:`ModelConfig` fields that set Gemma apart, from ``arch``'s GGUF keys and llama.cpp's rules."""
    num_layers = int(metadata[f"{arch}.block_count"])
    pattern = int(metadata.get(f"{arch}.attention.sliding_window_pattern", WINDOW_PATTERN[arch]))
    scale = None
    if num_layers == LAYERS_OF_27B[arch]:
        hidden, heads = int(metadata[f"{arch}.embedding_length"]), int(metadata[f"{arch}.attention.head_count"])
        scale = (hidden / heads) ** -0.5
    return {
        "local_layers": windowed_layers(num_layers, pattern),
        "local_rope_theta": LOCAL_ROPE_THETA.get(arch),
        "attention_scale": scale,
        "attn_logit_softcap": opt_float(metadata.get(f"{arch}.attn_logit_softcapping")),
        "final_logit_softcap": opt_float(metadata.get(f"{arch}.final_logit_softcapping")),
    }
