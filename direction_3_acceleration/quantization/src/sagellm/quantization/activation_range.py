"""Per-input-channel activation ranges, collected while calibration text runs through a model."""

from __future__ import annotations

import torch


class ActivationRange:
    """Running max of |x| per channel (the last dimension) over every observed batch.

    The w8a8 quantizer's calibration observer (core's ``CalibrationObserver``):
    its ``result`` is what ``SmoothQuantW8A8.quantize(weight, calibration=...)``
    smooths with.
    """

    def __init__(self) -> None:
        self.absmax: torch.Tensor | None = None
        self.num_rows = 0

    def observe(self, x: torch.Tensor) -> None:
        rows = x.detach().reshape(-1, x.shape[-1])
        batch_max = rows.abs().amax(dim=0).float()
        self.absmax = batch_max if self.absmax is None else torch.maximum(self.absmax, batch_max)
        self.num_rows += rows.shape[0]

    @property
    def result(self) -> torch.Tensor | None:
        """[in_features] float32 max |x| seen so far; None before the first batch."""
        return self.absmax
