"""Read a Hugging Face checkpoint directory (config.json + *.safetensors)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from sagellm.core.errors import ModelLoadError
from sagellm.engines.model.config import ModelConfig
from sagellm.engines.model.gemma_hf import HF_MODEL_TYPES, fold_norm_offsets, gemma_config
from sagellm.engines.model.rope_scaling import scaling_from_hf

SUPPORTED_MODEL_TYPES = ("llama", "qwen2", "qwen3", "mistral", *HF_MODEL_TYPES)


def read_hf_config(directory: Path) -> dict[str, Any]:
    path = directory / "config.json"
    if not path.is_file():
        raise ModelLoadError(f"{directory} has no config.json; expected a Hugging Face model directory")
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"cannot parse {path}: {exc}") from None
    return data


def _window(value: Any, used: Any) -> int | None:
    """The attention window, when the config sets one and does not switch it off (Qwen's use_sliding_window)."""
    return int(value) if isinstance(value, int) and value > 0 and used is not False else None


def config_from_hf(data: dict[str, Any], directory: Path) -> ModelConfig:
    model_type = data.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ModelLoadError(
            f"{directory}: model_type {model_type!r} is not supported (supported: {', '.join(SUPPORTED_MODEL_TYPES)})"
        )
    try:
        gemma: dict[str, Any] = {}
        if model_type in HF_MODEL_TYPES:
            model_type = HF_MODEL_TYPES[model_type]
            data, gemma = gemma_config(data, model_type)
        hidden = int(data["hidden_size"])
        num_heads = int(data["num_attention_heads"])
        eos = data.get("eos_token_id")
        eos_ids = tuple(eos) if isinstance(eos, list) else ((int(eos),) if eos is not None else ())
        rope = data.get("rope_parameters") or {}
        configured_max = int(data.get("max_position_embeddings", 2048))
        scaling = scaling_from_hf(data, configured_max)
        fields: dict[str, Any] = dict(
            architecture=model_type,
            vocab_size=int(data["vocab_size"]),
            hidden_size=hidden,
            intermediate_size=int(data["intermediate_size"]),
            num_layers=int(data["num_hidden_layers"]),
            num_heads=num_heads,
            num_kv_heads=int(data.get("num_key_value_heads") or num_heads),
            head_dim=int(data.get("head_dim") or hidden // num_heads),
            max_position_embeddings=scaling.max_positions(configured_max) if scaling else configured_max,
            rms_norm_eps=float(data.get("rms_norm_eps", 1e-6)),
            rope_theta=float(data.get("rope_theta", rope.get("rope_theta", 10000.0))),
            rope_scaling=scaling,
            attention_bias=bool(data.get("attention_bias", model_type == "qwen2")),
            qk_norm=model_type == "qwen3",
            sliding_window=_window(data.get("sliding_window"), data.get("use_sliding_window", True)),
            tie_word_embeddings=bool(data.get("tie_word_embeddings", False)),
            bos_token_id=data.get("bos_token_id"),
            eos_token_ids=eos_ids,
            name=directory.name,
        )
        return ModelConfig(**{**fields, **gemma})
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelLoadError(f"{directory}/config.json is missing or has a bad field: {exc}") from None


def load_safetensors_dir(
    directory: Path, dtype: torch.dtype, progress: Callable[[int, int], None] | None = None
) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    config = config_from_hf(read_hf_config(directory), directory)
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise ModelLoadError(f"{directory} has no *.safetensors weight files")
    weights: dict[str, torch.Tensor] = {}
    for i, file in enumerate(files):
        try:
            shard = load_file(str(file))
        except (SafetensorError, OSError) as exc:
            raise ModelLoadError(f"cannot read {file}: {exc}") from None
        weights.update({name: tensor.to(dtype) for name, tensor in shard.items()})
        if progress is not None:
            progress(i + 1, len(files))
    if config.is_gemma:
        fold_norm_offsets(weights)
    return config, weights
