"""Rotary position embedding in the Hugging Face "rotate half" layout."""

from __future__ import annotations

import torch

from sagellm.engines.model.rope_scaling import RopeScaling, inverse_frequencies


class RotaryEmbedding:
    """Precomputed cos/sin tables indexed by absolute position.

    Computed in float32 exactly as transformers does (``inv_freq * position``),
    so positions map to bit-identical angles and greedy outputs can match;
    ``scaling`` (rope_scaling.py) changes the frequencies (and, for YaRN,
    multiplies cos/sin by its attention factor).
    """

    def __init__(
        self,
        head_dim: int,
        max_positions: int,
        theta: float,
        device: torch.device,
        scaling: RopeScaling | None = None,
    ) -> None:
        inv_freq, attention_factor = inverse_frequencies(head_dim, theta, scaling)
        positions = torch.arange(max_positions, dtype=torch.float32)
        freqs = torch.outer(positions, inv_freq)
        angles = torch.cat((freqs, freqs), dim=-1)
        self.cos = (angles.cos() * attention_factor).to(device)
        self.sin = (angles.sin() * attention_factor).to(device)
        self.max_positions = max_positions

    def tables(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin for each token: [T, 1, D], broadcast over heads."""
        return (
            self.cos.index_select(0, positions).unsqueeze(1).to(dtype),
            self.sin.index_select(0, positions).unsqueeze(1).to(dtype),
        )


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin
