"""What every sparsifier shares: options, core's Sparsifier protocol around a method's ``_prune``, OWL, the kernel.

A method (magnitude, Wanda, SparseGPT) supplies its observer and
``_prune(weight, calibration, sparsity)``, the pruned weight; this class
checks the input, resolves the layer's share, spreads shares over blocks
(OWL) and hands the result to the kernel dispatch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, TypeVar

import torch

from sagellm.core.errors import ConfigError
from sagellm.sparsity.input_statistics import InputStatistics, InputStats
from sagellm.sparsity.kernel_dispatch import pack, sparse_linear
from sagellm.sparsity.options import COMMON_OPTIONS, SparsifierOptions, parse_options
from sagellm.sparsity.owl import outlier_ratio, owl_sparsities
from sagellm.sparsity.sparse_weight import SparseWeight
from sagellm.sparsity.wanda import wanda_scores

_S = TypeVar("_S", bound="PruningSparsifier")


class PruningSparsifier:
    """Base of the registered sparsifiers; ``Sparsifier(**options)`` takes a config section's options."""

    method: ClassVar[str] = "pruning"
    option_names: ClassVar[tuple[str, ...]] = COMMON_OPTIONS

    def __init__(self, **options: Any) -> None:
        self.options: SparsifierOptions = parse_options(self.method, options, self.option_names)

    @classmethod
    def from_config(cls: type[_S], section: Any, **_deps: Any) -> _S:
        return cls(**dict(section.options))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.options})"

    @property
    def pattern(self) -> str:
        return self.options.pattern.name

    @property
    def sparsity(self) -> float:
        return self.options.pattern.sparsity

    def calibration_observer(self) -> InputStatistics | None:
        return None

    def layer_sparsities(self, blocks: Sequence[Sequence[tuple[Any, Any]]]) -> list[float]:
        """Uniform, or OWL's outlier-weighted shares when ``owl_lambda`` > 0 (unstructured only)."""
        if self.options.owl_lambda == 0.0:
            return [self.sparsity] * len(blocks)
        ratios = [outlier_ratio([_outlier_scores(w, c) for w, c in block], self.options.owl_m) for block in blocks]
        return owl_sparsities(ratios, self.sparsity, self.options.owl_lambda)

    def sparsify(self, weight: Any, calibration: Any = None, sparsity: float | None = None) -> SparseWeight:
        """The pruned weight; ``sparsity`` overrides the unstructured share (an N:M pattern accepts only its own)."""
        weight = _check_weight(weight)
        pattern = self.options.pattern
        pattern.check_width(weight.shape[1])
        pruned = self._prune(weight, calibration, pattern.target(sparsity))
        return pack(pruned.to(weight.dtype), pattern, self.options.kernel)

    def _prune(self, weight: torch.Tensor, calibration: Any, sparsity: float) -> torch.Tensor:
        raise NotImplementedError

    def linear(self, x: torch.Tensor, sweight: SparseWeight, bias: torch.Tensor | None = None) -> torch.Tensor:
        return sparse_linear(x, _check_sparse(sweight), bias)

    def densify(self, sweight: SparseWeight) -> torch.Tensor:
        return _check_sparse(sweight).weight

    def stats(self, calibration: Any, weight: torch.Tensor, *, gram: bool) -> InputStats:
        """``calibration`` as this method's observer result for ``weight``, else a clear error."""
        if calibration is None:
            raise ConfigError(
                f"{self.method} sparsity needs calibration: pass the result of calibration_observer() "
                "after running calibration inputs through the layer"
            )
        if not isinstance(calibration, InputStats):
            raise TypeError(f"{self.method} takes InputStats calibration, got {type(calibration).__name__}")
        if calibration.sum_sq.shape[0] != weight.shape[1]:
            raise ValueError(f"calibration has {calibration.sum_sq.shape[0]} channels, weight {weight.shape[1]} inputs")
        if gram and calibration.gram is None:
            raise ConfigError(f"{self.method} needs the inputs' Gram matrix: use this sparsifier's own observer")
        return calibration


def _outlier_scores(weight: Any, calibration: Any) -> torch.Tensor:
    """Wanda's scores where input norms were observed, else |W| (magnitude: no calibration)."""
    weight = _check_weight(weight)
    if isinstance(calibration, InputStats):
        return wanda_scores(weight, calibration.channel_norms)
    magnitudes: torch.Tensor = weight.detach().float().abs()
    return magnitudes


def _check_weight(weight: Any) -> torch.Tensor:
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        raise ValueError(f"a sparsifier prunes a 2-D [out, in] tensor, got {getattr(weight, 'shape', type(weight))}")
    return weight


def _check_sparse(sweight: Any) -> SparseWeight:
    if not isinstance(sweight, SparseWeight):
        raise TypeError(f"expected the SparseWeight sparsify() returned, got {type(sweight).__name__}")
    return sweight
