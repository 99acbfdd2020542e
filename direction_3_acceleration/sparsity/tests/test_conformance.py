"""All three sparsifiers pass core's Sparsifier conformance suite for 2:4, 4:8 and unstructured."""

from __future__ import annotations

from typing import Any

import torch

from sagellm.core.testing import SparsifierConformance
from sagellm.sparsity import MagnitudeSparsifier, PruningSparsifier, SparseGPTSparsifier, WandaSparsifier


class _TorchSuite(SparsifierConformance):
    # kernel=auto runs 2:4 through the int8 packed kernel where it is built: int8 activations and weights.
    linear_tolerance = 0.05

    def make_weight(self, rows: int, cols: int, seed: int) -> Any:
        generator = torch.Generator().manual_seed(seed)
        mixing = torch.randn(cols, cols, generator=generator) / cols**0.5 + torch.eye(cols)
        return torch.randn(rows, cols, generator=generator) @ mixing  # correlated columns, both signs

    def to_rows(self, tensor: Any) -> list[list[float]]:
        return tensor.float().tolist()


class TestMagnitudeConformance(_TorchSuite):
    def make_sparsifier(self, pattern: str) -> PruningSparsifier:
        return MagnitudeSparsifier(pattern=pattern)


class TestWandaConformance(_TorchSuite):
    def make_sparsifier(self, pattern: str) -> PruningSparsifier:
        return WandaSparsifier(pattern=pattern)


class TestWandaUpdateConformance(_TorchSuite):
    def make_sparsifier(self, pattern: str) -> PruningSparsifier:
        return WandaSparsifier(pattern=pattern, update=True)


class TestSparseGPTConformance(_TorchSuite):
    def make_sparsifier(self, pattern: str) -> PruningSparsifier:
        return SparseGPTSparsifier(pattern=pattern)


class TestOWLConformance(_TorchSuite):
    patterns = ("unstructured",)

    def make_sparsifier(self, pattern: str) -> PruningSparsifier:
        return WandaSparsifier(pattern=pattern, owl_lambda=0.08)


class TestDenseKernelConformance(_TorchSuite):
    """With the dense path forced, linear is F.linear on the pruned weight: float32 exact to rounding."""

    linear_tolerance = 1e-5

    def make_sparsifier(self, pattern: str) -> PruningSparsifier:
        return MagnitudeSparsifier(pattern=pattern, kernel="dense")
