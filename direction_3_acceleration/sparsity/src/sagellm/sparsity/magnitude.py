"""Magnitude pruning: drop the smallest |W|, no calibration (the baseline of the Wanda and SparseGPT papers).

Unstructured masks compare the whole layer, as those papers' magnitude
baseline does; N:M masks compare within each group of M.
"""

from __future__ import annotations

import torch

from sagellm.sparsity.pattern import SparsityPattern
from sagellm.sparsity.select import select_mask


def magnitude_mask(weight: torch.Tensor, pattern: SparsityPattern, sparsity: float) -> torch.Tensor:
    """Mask (True = pruned) of a [out, in] weight's smallest magnitudes."""
    return select_mask(weight.detach().float().abs(), pattern, sparsity, per_row=False)
