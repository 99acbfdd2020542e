"""Which entries of a weight may stay nonzero: ``unstructured`` (a share of zeros) or ``N:M``.

``N:M`` keeps at most N nonzeros in every M consecutive inputs of a row,
groups aligned at column 0 (what 2:4 sparse kernels read)::

    row:  | w w w w | w w w w | ...     M = 4 inputs per group
    2:4:  | x . x . | . x x . | ...     N = 2 kept, M - N = 2 pruned, in every group

So its sparsity is fixed at ``1 - N/M``; ``unstructured`` takes any share in [0, 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sagellm.core.errors import ConfigError

UNSTRUCTURED = "unstructured"
DEFAULT_SPARSITY = 0.5
_TOLERANCE = 1e-9  # an N:M pattern accepts a requested sparsity this close to its own


@dataclass(frozen=True, slots=True)
class SparsityPattern:
    """``n``/``m`` set for ``N:M`` (None for unstructured); ``sparsity`` is the share of zeros aimed at."""

    n: int | None
    m: int | None
    sparsity: float

    @property
    def name(self) -> str:
        return UNSTRUCTURED if self.m is None else f"{self.n}:{self.m}"

    @property
    def is_n_m(self) -> bool:
        return self.m is not None

    @property
    def num_pruned(self) -> int:
        """Entries pruned in every group of M (N:M only)."""
        if self.n is None or self.m is None:
            raise ValueError("num_pruned is defined for N:M patterns only")
        return self.m - self.n

    def check_width(self, in_features: int) -> None:
        """N:M groups must tile a row: M has to divide ``in_features``."""
        if self.m is not None and in_features % self.m:
            raise ConfigError(
                f"sparsity pattern {self.name} needs in_features divisible by {self.m}, got {in_features}"
            )

    def target(self, sparsity: float | None) -> float:
        """The share to prune for one layer: ``sparsity`` overrides unstructured, N:M accepts only its own."""
        if sparsity is None:
            return self.sparsity
        if self.is_n_m:
            if abs(sparsity - self.sparsity) > _TOLERANCE:
                raise ConfigError(f"pattern {self.name} fixes sparsity at {self.sparsity}, cannot prune {sparsity}")
            return self.sparsity
        return check_sparsity(sparsity)


def check_sparsity(value: Any) -> float:
    """A share of zeros in [0, 1), else a ConfigError."""
    try:
        share = float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"sparsity must be a number in [0, 1), got {value!r}") from exc
    if not 0.0 <= share < 1.0:
        raise ConfigError(f"sparsity must be in [0, 1), got {share}")
    return share


def parse_pattern(value: Any, sparsity: Any = None) -> SparsityPattern:
    """``"unstructured"`` (``sparsity`` default 0.5) or ``"N:M"`` with 0 < N < M (``sparsity`` must be unset)."""
    text = _pattern_text(value)
    if text == UNSTRUCTURED:
        return SparsityPattern(None, None, DEFAULT_SPARSITY if sparsity is None else check_sparsity(sparsity))
    n_text, sep, m_text = text.partition(":")
    if not (sep and n_text.isdigit() and m_text.isdigit() and 0 < int(n_text) < int(m_text)):
        raise ConfigError(
            f"sparsity pattern must be '{UNSTRUCTURED}' or 'N:M' with 0 < N < M (2:4, 4:8), got {value!r}"
        )
    if sparsity is not None:
        raise ConfigError(f"option sparsity applies to the '{UNSTRUCTURED}' pattern only; {text} fixes it")
    n, m = int(n_text), int(m_text)
    return SparsityPattern(n, m, 1.0 - n / m)


def _pattern_text(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        # sageLLM's config files and CLI read 2:4 as text (core's yaml_scalars); plain YAML 1.1 reads it as 124.
        raise ConfigError(f"sparsity pattern must be text such as '2:4', got the number {value} (quote the pattern)")
    if not isinstance(value, str):
        raise ConfigError(f"sparsity pattern must be a string such as '2:4' or '{UNSTRUCTURED}', got {value!r}")
    return value.strip().lower()
