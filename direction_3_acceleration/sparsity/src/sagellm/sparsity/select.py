"""Turn importance scores into a pruning mask (True = pruned): the lowest scores of each comparison group.

Every method scores each weight (magnitude: |W|; Wanda: |W| x input norm;
SparseGPT: W^2 / [H^-1]_jj^2) and prunes the lowest; they differ in the score
and in what is compared. Ties go to the lower index (a stable sort), so masks
are deterministic.
"""

from __future__ import annotations

import torch

from sagellm.sparsity.pattern import SparsityPattern


def lowest(scores: torch.Tensor, count: int) -> torch.Tensor:
    """Mask of the ``count`` lowest entries of the last dimension of ``scores``, per leading index."""
    mask = torch.zeros_like(scores, dtype=torch.bool)
    if count > 0:
        order = torch.sort(scores, dim=-1, stable=True).indices
        mask.scatter_(-1, order[..., :count], True)
    return mask


def lowest_share(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Mask of the lowest ``round(sparsity * numel)`` entries of the whole tensor (one comparison group)."""
    flat = lowest(scores.reshape(-1), round(sparsity * scores.numel()))
    return flat.reshape(scores.shape)


def lowest_per_row(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Mask of the lowest ``round(sparsity * in)`` entries of every output row (Wanda's comparison group)."""
    return lowest(scores, round(sparsity * scores.shape[-1]))


def lowest_n_m(scores: torch.Tensor, pattern: SparsityPattern) -> torch.Tensor:
    """Mask of the ``M - N`` lowest entries in each group of M consecutive columns of every row."""
    assert pattern.m is not None
    rows, cols = scores.shape
    groups = scores.reshape(rows, cols // pattern.m, pattern.m)
    return lowest(groups, pattern.num_pruned).reshape(rows, cols)


def select_mask(scores: torch.Tensor, pattern: SparsityPattern, sparsity: float, *, per_row: bool) -> torch.Tensor:
    """The mask for ``pattern``: N:M groups, else the lowest share per row (``per_row``) or per layer."""
    if pattern.is_n_m:
        return lowest_n_m(scores, pattern)
    return lowest_per_row(scores, sparsity) if per_row else lowest_share(scores, sparsity)
