"""The registered sparsifiers (entry points ``magnitude``, ``wanda``, ``sparsegpt`` in ``sagellm.sparsifier``).

Each implements core's :class:`~sagellm.core.protocols.Sparsifier` through
:class:`PruningSparsifier` and differs only in its calibration and mask:

============  =========================  =====================================================
method        calibration observer       ``_prune``
============  =========================  =====================================================
magnitude     none                       smallest |W| (whole layer / N:M group)
wanda         input sums of squares      smallest |W| * ||X_j|| per row; ``update=true`` adds
              (+ Gram with update)       SparseGPT's weight reconstruction for that mask
sparsegpt     Gram matrix X^T X          OBS mask and update, column by column
============  =========================  =====================================================
"""

from __future__ import annotations

from typing import Any

import torch

from sagellm.sparsity.input_statistics import InputStatistics
from sagellm.sparsity.magnitude import magnitude_mask
from sagellm.sparsity.options import COMMON_OPTIONS, SOLVER_OPTIONS
from sagellm.sparsity.sparsegpt import sparsegpt_prune
from sagellm.sparsity.sparsifier_base import PruningSparsifier
from sagellm.sparsity.wanda import wanda_mask


class MagnitudeSparsifier(PruningSparsifier):
    """``magnitude``: no calibration; options pattern, sparsity, kernel, owl_lambda, owl_m."""

    method = "magnitude"

    def _prune(self, weight: torch.Tensor, calibration: Any, sparsity: float) -> torch.Tensor:
        return weight.masked_fill(magnitude_mask(weight, self.options.pattern, sparsity), 0)


class WandaSparsifier(PruningSparsifier):
    """``wanda``: common options plus ``update`` (default false), ``blocksize`` and ``percdamp`` (used by update)."""

    method = "wanda"
    option_names = (*COMMON_OPTIONS, "update", *SOLVER_OPTIONS)

    def calibration_observer(self) -> InputStatistics:
        return InputStatistics(gram=self.options.update)

    def _prune(self, weight: torch.Tensor, calibration: Any, sparsity: float) -> torch.Tensor:
        stats = self.stats(calibration, weight, gram=self.options.update)
        mask = wanda_mask(weight, stats.channel_norms, self.options.pattern, sparsity)
        if not self.options.update:
            return weight.masked_fill(mask, 0)
        assert stats.gram is not None
        return sparsegpt_prune(
            weight,
            stats.gram,
            self.options.pattern,
            sparsity,
            blocksize=self.options.blocksize,
            percdamp=self.options.percdamp,
            mask=mask,
        )


class SparseGPTSparsifier(PruningSparsifier):
    """``sparsegpt``: common options plus ``blocksize`` (default 128) and ``percdamp`` (default 0.01)."""

    method = "sparsegpt"
    option_names = (*COMMON_OPTIONS, *SOLVER_OPTIONS)

    def calibration_observer(self) -> InputStatistics:
        return InputStatistics(gram=True)

    def _prune(self, weight: torch.Tensor, calibration: Any, sparsity: float) -> torch.Tensor:
        stats = self.stats(calibration, weight, gram=True)
        assert stats.gram is not None
        return sparsegpt_prune(
            weight,
            stats.gram,
            self.options.pattern,
            sparsity,
            blocksize=self.options.blocksize,
            percdamp=self.options.percdamp,
        )
