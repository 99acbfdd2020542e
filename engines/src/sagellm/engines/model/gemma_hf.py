"""Gemma 2/3 fields of a Hugging Face config.json, and the weight fix its safetensors need.

transformers stores Gemma's RMSNorm weights as ``w`` and scales by
``1 + w``; the model here (like llama.cpp's files) takes ``1 + w`` as the
weight, so the loader adds the one. Gemma 3 text configs (``gemma3_text``)
keep one RoPE block per layer type (transformers 5's ``rope_parameters``)
or, older, ``rope_theta`` plus ``rope_local_base_freq``.
"""

from __future__ import annotations

from typing import Any

import torch

from sagellm.engines.model.gemma_layout import LOCAL_ROPE_THETA, WINDOW_PATTERN, opt_float, windowed_layers

HF_MODEL_TYPES = {"gemma2": "gemma2", "gemma3_text": "gemma3"}


def gemma_config(data: dict[str, Any], arch: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(``data`` with the full-attention layers' RoPE block as its own, the Gemma-only ModelConfig fields)."""
    num_layers = int(data["num_hidden_layers"])
    rope = data.get("rope_parameters") or {}
    full, local = rope.get("full_attention"), rope.get("sliding_attention")
    flat = dict(data)
    if isinstance(full, dict):
        flat["rope_parameters"] = full
        flat["rope_theta"] = full.get("rope_theta", data.get("rope_theta", 10000.0))
    local_theta = local.get("rope_theta") if isinstance(local, dict) else data.get("rope_local_base_freq")
    if local_theta is None:
        local_theta = LOCAL_ROPE_THETA.get(arch)
    window = data.get("sliding_window")
    fields = {
        "local_layers": _local_layers(data, arch, num_layers),
        "local_rope_theta": None if local_theta is None else float(local_theta),
        "attention_scale": float(data.get("query_pre_attn_scalar") or data.get("head_dim") or 256) ** -0.5,
        "attn_logit_softcap": opt_float(data.get("attn_logit_softcapping")),
        "final_logit_softcap": opt_float(data.get("final_logit_softcapping")),
        "sliding_window": int(window) if window else None,
        "qk_norm": arch == "gemma3",
        "tie_word_embeddings": bool(data.get("tie_word_embeddings", True)),
    }
    return flat, fields


def _local_layers(data: dict[str, Any], arch: str, num_layers: int) -> tuple[int, ...]:
    types = data.get("layer_types")
    if isinstance(types, list):
        return tuple(i for i, kind in enumerate(types) if kind == "sliding_attention")
    pattern = int(data.get("sliding_window_pattern") or WINDOW_PATTERN[arch])
    return windowed_layers(num_layers, pattern)


def fold_norm_offsets(weights: dict[str, torch.Tensor]) -> None:
    """Gemma's ``(1 + w)`` RMSNorm scales as plain weights, in float32 (gemma.py keeps norms float32)."""
    for name in [n for n in weights if n.endswith("norm.weight")]:
        weights[name] = weights[name].float() + 1.0
