"""Rotary position embedding in the Hugging Face "rotate half" layout."""

from __future__ import annotations

import torch


class RotaryEmbedding:
    """Precomputed cos/sin tables indexed by absolute position.

    Computed in float32 exactly as transformers does (``inv_freq * position``),
    so positions map to bit-identical angles and greedy outputs can match.
    """

    def __init__(self, head_dim: int, max_positions: int, theta: float, device: torch.device) -> None:
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
        positions = torch.arange(max_positions, dtype=torch.float32)
        freqs = torch.outer(positions, inv_freq)
        angles = torch.cat((freqs, freqs), dim=-1)
        self.cos = angles.cos().to(device)
        self.sin = angles.sin().to(device)
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
