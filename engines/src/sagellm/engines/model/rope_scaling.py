"""RoPE scaling: how a model stretches its rotary frequencies past its training context.

Llama 3.1-3.3 (``llama3``), linearly interpolated models (``linear``),
dynamic NTK (``dynamic``) and YaRN (``yarn``, Qwen2.5's long context) all
change the inverse frequencies (YaRN also scales cos/sin); a loader that
ignores them generates plausible but wrong text once positions pass the
original context. The formulas follow transformers' ``ROPE_INIT_FUNCTIONS``
so logits match it; ``dynamic`` uses the frequencies transformers would use
at the longest context (as vLLM does), since frequencies that change with
the batch's length would invalidate every cached key. GGUF files of Llama 3
carry the per-frequency divisors instead (``rope_freqs``: ``freq_factors``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from sagellm.core.errors import ModelLoadError

SUPPORTED = ("linear", "dynamic", "yarn", "llama3", "freq_factors")


@dataclass(frozen=True, slots=True)
class RopeScaling:
    rope_type: str
    factor: float = 1.0
    original_max_position_embeddings: int = 0  # the training context the formulas refer to
    low_freq_factor: float = 1.0  # llama3
    high_freq_factor: float = 4.0  # llama3
    beta_fast: float = 32.0  # yarn
    beta_slow: float = 1.0  # yarn
    attention_factor: float | None = None  # yarn: cos/sin scale; None: 0.1 ln(factor) + 1
    truncate: bool = True  # yarn: round the correction range outward
    freq_factors: tuple[float, ...] = ()  # GGUF rope_freqs: inv_freq is divided by these

    def max_positions(self, configured: int) -> int:
        """The context the scaled model reaches, given the config's max_position_embeddings."""
        if self.rope_type in ("linear", "dynamic"):
            return int(self.original_max_position_embeddings * self.factor)
        if self.rope_type == "yarn":
            return max(configured, int(self.original_max_position_embeddings * self.factor))
        return configured


def inverse_frequencies(head_dim: int, theta: float, scaling: RopeScaling | None) -> tuple[torch.Tensor, float]:
    """float32 inverse frequencies for ``head_dim`` and the factor cos/sin are multiplied by."""
    exponents = torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim
    if scaling is None:
        return 1.0 / (theta**exponents), 1.0
    kind = scaling.rope_type
    if kind == "linear":
        return 1.0 / (theta**exponents) / scaling.factor, 1.0
    if kind == "dynamic":
        base = theta * (scaling.factor * scaling.factor - (scaling.factor - 1)) ** (head_dim / (head_dim - 2))
        return 1.0 / (base**exponents), 1.0
    if kind == "llama3":
        return _llama3(1.0 / (theta**exponents), scaling), 1.0
    if kind == "yarn":
        return _yarn(head_dim, theta, scaling)
    if kind == "freq_factors":
        factors = torch.tensor(scaling.freq_factors, dtype=torch.float32)
        if factors.numel() != head_dim // 2:
            raise ModelLoadError(f"rope_freqs has {factors.numel()} factors, the heads need {head_dim // 2}")
        return 1.0 / (theta**exponents) / factors, 1.0
    raise ModelLoadError(f"RoPE scaling {kind!r} is not supported (supported: {', '.join(SUPPORTED)})")


def _llama3(inv_freq: torch.Tensor, s: RopeScaling) -> torch.Tensor:
    low_freq_wavelen = s.original_max_position_embeddings / s.low_freq_factor
    high_freq_wavelen = s.original_max_position_embeddings / s.high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_freq_wavelen, inv_freq / s.factor, inv_freq)
    smooth = (s.original_max_position_embeddings / wavelen - s.low_freq_factor) / (
        s.high_freq_factor - s.low_freq_factor
    )
    smoothed = (1 - smooth) * scaled / s.factor + smooth * scaled
    medium = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return torch.where(medium, smoothed, scaled)


def _yarn(dim: int, base: float, s: RopeScaling) -> tuple[torch.Tensor, float]:
    attention_factor = s.attention_factor
    if attention_factor is None:
        attention_factor = 0.1 * math.log(s.factor) + 1.0 if s.factor > 1 else 1.0

    def correction_dim(rotations: float) -> float:
        return (dim * math.log(s.original_max_position_embeddings / (rotations * 2 * math.pi))) / (2 * math.log(base))

    low, high = correction_dim(s.beta_fast), correction_dim(s.beta_slow)
    if s.truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001
    ramp = torch.clamp((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low), 0, 1)
    pos_freqs = base ** (torch.arange(0, dim, 2).float() / dim)
    extrapolation, interpolation = 1.0 / pos_freqs, 1.0 / (s.factor * pos_freqs)
    keep = 1 - ramp  # 1: high frequencies, left as they were
    return interpolation * (1 - keep) + extrapolation * keep, float(attention_factor)


def scaling_from_hf(data: dict[str, Any], configured_max: int) -> RopeScaling | None:
    """config.json's ``rope_scaling`` (or transformers 5's ``rope_parameters``); None when unscaled."""
    params = data.get("rope_scaling") or data.get("rope_parameters") or {}
    kind = params.get("rope_type") or params.get("type") or "default"
    if kind == "default":
        return None
    if kind not in SUPPORTED:
        raise ModelLoadError(f"RoPE scaling {kind!r} is not supported (supported: {', '.join(SUPPORTED[:-1])})")
    original = params.get("original_max_position_embeddings") or configured_max
    return RopeScaling(
        rope_type=kind,
        factor=float(params.get("factor") or 1.0),
        original_max_position_embeddings=int(original),
        low_freq_factor=float(params.get("low_freq_factor", 1.0)),
        high_freq_factor=float(params.get("high_freq_factor", 4.0)),
        beta_fast=float(params.get("beta_fast") or 32.0),
        beta_slow=float(params.get("beta_slow") or 1.0),
        attention_factor=params.get("attention_factor"),
        truncate=bool(params.get("truncate", True)),
    )


def scaling_from_gguf(metadata: dict[str, Any], arch: str, context_length: int) -> RopeScaling | None:
    """``{arch}.rope.scaling.*`` as llama.cpp writes it (linear, yarn); None for none."""
    kind = metadata.get(f"{arch}.rope.scaling.type") or "none"
    if kind == "none":
        return None
    if kind not in ("linear", "yarn"):
        raise ModelLoadError(f"GGUF RoPE scaling {kind!r} is not supported (supported: linear, yarn)")
    original = metadata.get(f"{arch}.rope.scaling.original_context_length") or context_length
    return RopeScaling(
        rope_type=kind,
        factor=float(metadata.get(f"{arch}.rope.scaling.factor") or 1.0),
        original_max_position_embeddings=int(original),
        beta_fast=float(metadata.get(f"{arch}.rope.scaling.yarn_beta_fast") or 32.0),
        beta_slow=float(metadata.get(f"{arch}.rope.scaling.yarn_beta_slow") or 1.0),
    )
