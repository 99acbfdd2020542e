"""SparseGPT (Frantar & Alistarh, 2023): prune column by column and fix the rest of the row each time.

Pruning minimises ``||X W^T - X W'^T||^2``, a least-squares problem in the
inputs' Gram matrix ``H = X^T X`` shared by every row. Walking the columns in
order, each pruned weight's error is pushed onto the columns not yet visited
through the upper Cholesky factor of ``H^-1`` (the OBS update, exact for the
columns that are left), so no matrix is ever re-inverted. Updates are lazy:
within a block of ``blocksize`` columns they are applied at once, to the
columns after it once per block::

    columns:  [ done | block i1..i2 (rank-1 updates) | later (one matmul per block) ]

The mask is chosen on the fly from ``w^2 / [U]_jj^2`` (OBS saliency), per
block for unstructured and at every M-th column for N:M, as in the reference
``fasterprune`` (IST-DASLab/sparsegpt); a fixed mask (Wanda's) skips selection
and only reconstructs. Two deliberate differences: exactly
``round(share x block)`` weights are pruned per block (the reference prunes
ties with its threshold, one more), and for N:M the block width is rounded down to a
multiple of M so that no group straddles two blocks.
"""

from __future__ import annotations

import torch

from sagellm.sparsity.pattern import SparsityPattern
from sagellm.sparsity.select import lowest, lowest_share

_DAMP_RETRIES = 6  # each retry multiplies the dampening by 10 when H + damp*I is not positive definite


def inverse_cholesky(gram: torch.Tensor, percdamp: float) -> torch.Tensor:
    """Upper Cholesky factor of ``(H + damp I)^-1``, damp = percdamp x mean diag(H) (float32)."""
    size = gram.shape[0]
    damp = percdamp * float(torch.diag(gram).mean())
    eye = torch.eye(size, device=gram.device, dtype=gram.dtype)
    for _ in range(_DAMP_RETRIES):
        lower, info = torch.linalg.cholesky_ex(gram + damp * eye)
        if int(info) == 0:
            upper: torch.Tensor = torch.linalg.cholesky(torch.cholesky_inverse(lower), upper=True)
            return upper
        damp = max(damp * 10.0, 1e-8)
    raise ValueError("the calibration Gram matrix is not positive definite even with heavy dampening")


def sparsegpt_prune(
    weight: torch.Tensor,
    gram: torch.Tensor,
    pattern: SparsityPattern,
    sparsity: float,
    *,
    blocksize: int = 128,
    percdamp: float = 0.01,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """The pruned [out, in] weight in float32: zeros on the chosen (or given) mask, the rest updated."""
    w = weight.detach().float().clone()
    hessian = gram.detach().to(device=w.device, dtype=torch.float32).clone()
    dead = torch.diag(hessian) == 0  # inputs that were always zero: their weights cannot matter
    hessian[dead, dead] = 1.0
    w[:, dead] = 0.0
    hinv = inverse_cholesky(hessian, percdamp)
    step = _block_width(blocksize, pattern)
    for i1 in range(0, w.shape[1], step):
        i2 = min(i1 + step, w.shape[1])
        block_mask = None if mask is None else mask[:, i1:i2].to(w.device)
        errors = _prune_block(w, hinv, i1, i2, pattern, sparsity, block_mask)
        w[:, i2:] -= errors @ hinv[i1:i2, i2:]
    return w


def _block_width(blocksize: int, pattern: SparsityPattern) -> int:
    if pattern.m is None:
        return blocksize
    return max(pattern.m, blocksize - blocksize % pattern.m)


def _prune_block(
    w: torch.Tensor,
    hinv: torch.Tensor,
    i1: int,
    i2: int,
    pattern: SparsityPattern,
    sparsity: float,
    block_mask: torch.Tensor | None,
) -> torch.Tensor:
    """Prune columns i1..i2 of ``w`` in place; returns the scaled errors [out, i2 - i1] for the later columns."""
    block = w[:, i1:i2].clone()
    hinv_block = hinv[i1:i2, i1:i2]
    diag = torch.diag(hinv_block)
    errors = torch.zeros_like(block)
    choose_n_m = block_mask is None and pattern.m is not None
    if block_mask is None:
        if pattern.is_n_m:
            block_mask = torch.zeros_like(block, dtype=torch.bool)  # filled group by group below
        else:
            block_mask = lowest_share(block.square() / diag.square().reshape(1, -1), sparsity)
    for i in range(i2 - i1):
        if choose_n_m and pattern.m is not None and i % pattern.m == 0:
            # Chosen from the weights as updated so far: earlier groups' errors already moved them.
            group = block[:, i : i + pattern.m].square() / diag[i : i + pattern.m].square().reshape(1, -1)
            block_mask[:, i : i + pattern.m] = lowest(group, pattern.num_pruned)
        column = block[:, i]
        kept = column.masked_fill(block_mask[:, i], 0.0)
        error = (column - kept) / diag[i]
        block[:, i:].addr_(error, hinv_block[i, i:], alpha=-1.0)
        block[:, i] = kept
        errors[:, i] = error
    w[:, i1:i2] = block
    return errors
