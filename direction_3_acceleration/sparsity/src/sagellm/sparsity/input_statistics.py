"""What a linear layer's calibration inputs tell the pruning methods, gathered batch by batch.

Wanda scores a weight by ``|W_ij| * ||X_j||_2``: it needs each input
channel's sum of squares. SparseGPT (and Wanda with ``update``) solves a
least-squares problem in the inputs' Gram matrix ``H = X^T X``, whose
diagonal is that same sum of squares. Both are plain sums over rows, so the
observer keeps float32 running sums on the inputs' device and a row count.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True, slots=True)
class InputStats:
    """A calibration result: ``sum_sq`` [in] = sum of x_j^2; ``gram`` [in, in] = X^T X when it was gathered."""

    num_rows: int
    sum_sq: torch.Tensor
    gram: torch.Tensor | None = None

    @property
    def channel_norms(self) -> torch.Tensor:
        """||X_j||_2 per input channel (Wanda's activation factor)."""
        return self.sum_sq.sqrt()


class InputStatistics:
    """A sparsifier's calibration observer (core's ``CalibrationObserver``); ``gram=True`` also sums X^T X.

    The Gram matrix costs in_features^2 floats per layer and a matmul per
    batch, so only the methods that solve with it ask for it.
    """

    def __init__(self, *, gram: bool = False) -> None:
        self.with_gram = gram
        self.num_rows = 0
        self.sum_sq: torch.Tensor | None = None
        self.gram: torch.Tensor | None = None

    def observe(self, x: torch.Tensor) -> None:
        rows = x.detach().reshape(-1, x.shape[-1]).float()
        if rows.shape[0] == 0:
            return
        batch_sq = rows.square().sum(dim=0)
        self.sum_sq = batch_sq if self.sum_sq is None else self.sum_sq + batch_sq
        if self.with_gram:
            batch_gram = rows.T @ rows
            self.gram = batch_gram if self.gram is None else self.gram + batch_gram
        self.num_rows += rows.shape[0]

    @property
    def result(self) -> InputStats | None:
        """The sums so far; None before the first nonempty batch."""
        if self.sum_sq is None:
            return None
        return InputStats(self.num_rows, self.sum_sq, self.gram)
