"""OWL (Yin et al., 2024): prune decoder blocks with many activation outliers less, the others more.

A block's outlier ratio (its "layerwise outlier distribution") is the share
of its linears' Wanda scores ``|W_ij| * ||X_j||`` above ``owl_m`` times their
mean (M = 5 in the paper). The ratios are mapped linearly onto a range of
width ``2 * lambda`` and shifted so that their mean is the target, the most
outlier-heavy block getting the lowest sparsity (as the OWL reference code
does); where a skewed spread would put a block further than ``lambda`` from
the target, the deviations are shrunk towards it so that every share stays
within ``target +- lambda`` and the mean is kept.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

_FLAT = 1e-12  # outlier ratios closer than this are equal: uniform sparsity


def outlier_ratio(scores: Sequence[torch.Tensor], owl_m: float) -> float:
    """Share of all entries of ``scores`` (one block's linears) above ``owl_m`` x their common mean."""
    flat = torch.cat([s.detach().float().reshape(-1).cpu() for s in scores])
    if flat.numel() == 0:
        return 0.0
    return float((flat > owl_m * flat.mean()).float().mean())


def owl_sparsities(ratios: Sequence[float], target: float, owl_lambda: float) -> list[float]:
    """One sparsity per block: mean ``target``, within ``target +- owl_lambda``, lower where ``ratios`` is higher."""
    values = torch.tensor(list(ratios), dtype=torch.float64)
    if values.numel() == 0:
        return []
    spread = float(values.max() - values.min())
    if owl_lambda == 0.0 or spread < _FLAT:
        return [target] * values.numel()
    density = (values - values.min()) / spread * (2.0 * owl_lambda)  # OWL keeps a share, 1 - sparsity
    deviation = -(density - density.mean())  # more outliers -> more kept -> lower sparsity
    widest = float(deviation.abs().max())
    if widest > owl_lambda:
        deviation *= owl_lambda / widest
    return [target + float(d) for d in deviation]
