"""A user's RoPE scaling in place of the model's own: longer contexts than the model was trained for.

vLLM's ``--rope-scaling`` (and ``hf_overrides.rope_scaling``) and llama.cpp's
``--rope-scaling yarn --rope-scale N`` stretch a model's positions at load.
The override is read exactly as config.json's ``rope_scaling`` is
(rope_scaling.py), replaces any scaling the file had, and sets the
model's positions to ``original_max_position_embeddings * factor``; where
the override leaves ``original_max_position_embeddings`` out, the model's
own positions are the original ones.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sagellm.core.errors import ConfigError, ModelLoadError
from sagellm.engines.model.config import ModelConfig
from sagellm.engines.model.rope_scaling import scaling_from_hf


def with_rope_override(config: ModelConfig, override: dict[str, Any] | None) -> ModelConfig:
    """``config`` with ``override`` as its RoPE scaling (None: unchanged); ConfigError for a bad one."""
    if override is None:
        return config
    if config.local_rope_theta is not None:
        raise ConfigError("model.rope_scaling is not supported for models with per-layer RoPE bases (Gemma 3)")
    original = int(override.get("original_max_position_embeddings") or config.max_position_embeddings)
    try:
        scaling = scaling_from_hf(
            {"rope_scaling": {**override, "original_max_position_embeddings": original}}, original
        )
    except (ModelLoadError, TypeError, ValueError) as exc:
        raise ConfigError(f"model.rope_scaling: {exc}") from None
    if scaling is None:  # "default": plain RoPE over the model's own positions
        return dataclasses.replace(config, rope_scaling=None)
    if scaling.factor < 1.0:
        raise ConfigError(f"model.rope_scaling: factor must be >= 1, got {scaling.factor}")
    positions = max(scaling.max_positions(original), int(original * scaling.factor))
    return dataclasses.replace(config, rope_scaling=scaling, max_position_embeddings=positions)
