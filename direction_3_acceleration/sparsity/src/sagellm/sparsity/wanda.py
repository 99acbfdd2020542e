"""Wanda (Sun et al., 2023): prune by |W_ij| * ||X_j||_2, compared within each output row.

A small weight on an input channel with large activations can matter more
than a large weight on a quiet one; scaling |W| by the channel's input norm
estimates each weight's contribution to the output. The paper compares
scores per output row (per N:M group for N:M), which keeps every output
equally dense, and needs no weight update.
"""

from __future__ import annotations

import torch

from sagellm.sparsity.pattern import SparsityPattern
from sagellm.sparsity.select import select_mask


def wanda_scores(weight: torch.Tensor, channel_norms: torch.Tensor) -> torch.Tensor:
    """|W_ij| * ||X_j||_2 in float32 for a [out, in] weight and [in] input norms."""
    norms = channel_norms.detach().to(device=weight.device, dtype=torch.float32)
    return weight.detach().float().abs() * norms.reshape(1, -1)


def wanda_mask(
    weight: torch.Tensor, channel_norms: torch.Tensor, pattern: SparsityPattern, sparsity: float
) -> torch.Tensor:
    """Mask (True = pruned) of the lowest Wanda scores per output row (or per N:M group)."""
    return select_mask(wanda_scores(weight, channel_norms), pattern, sparsity, per_row=True)
