"""The pruned weight a sparsifier hands the engine: dense with exact zeros, plus packed operands when a kernel runs it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True, slots=True)
class SparseWeight:
    """What ``sparsify`` returns and ``linear``/``densify`` take.

    ``weight`` is the pruned [out, in] weight in the original dtype (exact
    zeros where pruned), what the dense path multiplies with and ``densify``
    returns. ``packed`` holds a packed 2:4 kernel's operands
    (``sagellm.sparsity.packed24.Packed24Weight``) when ``kernel`` is
    ``"int8"`` or ``"bf16"``; it is None and ``kernel`` is ``"dense"``
    otherwise (another pattern, ``kernel=dense``, or no kernel built here).
    """

    weight: torch.Tensor
    pattern: str
    kernel: str = "dense"
    packed: Any = None

    @property
    def shape(self) -> tuple[int, int]:
        rows, cols = self.weight.shape
        return int(rows), int(cols)

    @property
    def density(self) -> float:
        """Share of nonzero entries of ``weight``."""
        return float(torch.count_nonzero(self.weight)) / max(1, self.weight.numel())
