"""Conformance suite for :class:`sagellm.core.protocols.Sparsifier`.

Core stays torch-free, so the implementer supplies weights in its own tensor
type (``make_weight``) and reads them back as nested lists (``to_rows``).
Each test runs every pattern in ``patterns``; calibration inputs come from
``make_weight`` too and go through a fresh observer per layer, as an engine
runs them.
"""

from __future__ import annotations

from typing import Any

from sagellm.core.errors import ConfigError
from sagellm.core.protocols import CalibrationObserver, Sparsifier
from sagellm.core.testing.raises import raises


def _n_m(pattern: str) -> tuple[int, int] | None:
    n, sep, m = pattern.partition(":")
    return (int(n), int(m)) if sep else None


class SparsifierConformance:
    """Inherit and implement :meth:`make_sparsifier`, :meth:`make_weight` and :meth:`to_rows`.

    ``linear_tolerance`` bounds the relative L2 error of ``linear(x, sw)``
    against ``x @ densify(sw).T`` (loosen it for a low-precision kernel:
    ~0.05 for int8); ``sparsity_tolerance`` bounds how far an unstructured
    layer's share of zeros may miss its target.
    """

    patterns: tuple[str, ...] = ("2:4", "4:8", "unstructured")
    rows, cols = 32, 128
    batch = 4
    calibration_rows = 256
    linear_tolerance = 1e-3
    sparsity_tolerance = 0.01

    def make_sparsifier(self, pattern: str) -> Sparsifier:
        raise NotImplementedError

    def make_weight(self, rows: int, cols: int, seed: int) -> Any:
        """A [rows, cols] tensor with values of both signs (weights and inputs alike)."""
        raise NotImplementedError

    def to_rows(self, tensor: Any) -> list[list[float]]:
        raise NotImplementedError

    def _calibration(self, sparsifier: Sparsifier, cols: int, seed: int) -> Any:
        observer = sparsifier.calibration_observer()
        if observer is None:
            return None
        observer.observe(self.make_weight(self.calibration_rows, cols, seed=seed + 1000))
        return observer.result

    def _pruned(self, sparsifier: Sparsifier, seed: int, sparsity: float | None = None, cols: int = 0) -> Any:
        cols = cols or self.cols
        weight = self.make_weight(self.rows, cols, seed=seed)
        return sparsifier.sparsify(weight, self._calibration(sparsifier, cols, seed), sparsity=sparsity)

    def _zero_share(self, rows: list[list[float]]) -> float:
        return sum(v == 0.0 for row in rows for v in row) / sum(len(row) for row in rows)

    def test_implements_the_protocol(self) -> None:
        for pattern in self.patterns:
            sparsifier = self.make_sparsifier(pattern)
            assert isinstance(sparsifier, Sparsifier)
            assert sparsifier.pattern == pattern

    def test_sparsity_is_a_share_and_n_m_fixes_it(self) -> None:
        for pattern in self.patterns:
            sparsity = self.make_sparsifier(pattern).sparsity
            n_m = _n_m(pattern)
            assert 0.0 <= sparsity < 1.0
            assert n_m is None or abs(sparsity - (1 - n_m[0] / n_m[1])) < 1e-9, pattern

    def test_densify_keeps_the_shape_and_values_are_finite(self) -> None:
        for pattern in self.patterns:
            sparsifier = self.make_sparsifier(pattern)
            dense = self.to_rows(sparsifier.densify(self._pruned(sparsifier, seed=0)))
            assert len(dense) == self.rows and all(len(row) == self.cols for row in dense), pattern
            assert all(abs(v) < float("inf") for row in dense for v in row), pattern

    def test_n_m_rows_keep_at_most_n_in_every_group(self) -> None:
        for pattern in self.patterns:
            n_m = _n_m(pattern)
            if n_m is None:
                continue
            n, m = n_m
            sparsifier = self.make_sparsifier(pattern)
            for row in self.to_rows(sparsifier.densify(self._pruned(sparsifier, seed=1))):
                for start in range(0, len(row), m):
                    assert sum(v != 0.0 for v in row[start : start + m]) <= n, (pattern, start)

    def test_n_m_rejects_a_width_m_does_not_divide(self) -> None:
        for pattern in self.patterns:
            n_m = _n_m(pattern)
            if n_m is None or (self.cols + 2) % n_m[1] == 0:
                continue
            with raises(ConfigError):
                self._pruned(self.make_sparsifier(pattern), seed=2, cols=self.cols + 2)

    def test_unstructured_hits_its_target_share(self) -> None:
        for pattern in self.patterns:
            if _n_m(pattern) is not None:
                continue
            sparsifier = self.make_sparsifier(pattern)
            for target in (None, 0.25):
                share = self._zero_share(self.to_rows(sparsifier.densify(self._pruned(sparsifier, 3, target))))
                want = sparsifier.sparsity if target is None else target
                assert abs(share - want) <= self.sparsity_tolerance, (pattern, target, share)

    def test_linear_computes_the_pruned_layer(self) -> None:
        for pattern in self.patterns:
            sparsifier = self.make_sparsifier(pattern)
            sweight = self._pruned(sparsifier, seed=4)
            x = self.make_weight(self.batch, self.cols, seed=5)
            got = self.to_rows(sparsifier.linear(x, sweight))
            w, inputs = self.to_rows(sparsifier.densify(sweight)), self.to_rows(x)
            want = [[sum(a * b for a, b in zip(row, w_row)) for w_row in w] for row in inputs]
            assert len(got) == self.batch and all(len(row) == self.rows for row in got), pattern
            error = sum((g - e) ** 2 for gr, er in zip(got, want) for g, e in zip(gr, er)) ** 0.5
            norm = sum(e**2 for er in want for e in er) ** 0.5
            assert error <= self.linear_tolerance * norm, f"{pattern}: relative error {error / norm:.4f}"

    def test_observers_are_optional_fresh_and_independent(self) -> None:
        for pattern in self.patterns:
            sparsifier = self.make_sparsifier(pattern)
            first, second = sparsifier.calibration_observer(), sparsifier.calibration_observer()
            if first is None:
                assert second is None, pattern  # a sparsifier either calibrates or it does not
                continue
            assert isinstance(first, CalibrationObserver) and isinstance(second, CalibrationObserver)
            assert first is not second and first.result is None, pattern
            first.observe(self.make_weight(self.batch, self.cols, seed=6))
            assert first.result is not None and second.result is None, pattern

    def test_layer_sparsities_give_one_share_per_block_around_the_target(self) -> None:
        for pattern in self.patterns:
            sparsifier = self.make_sparsifier(pattern)
            blocks = []
            for block in range(3):
                pairs = []
                for layer in range(2):
                    seed = 10 + 2 * block + layer
                    weight = self.make_weight(self.rows, self.cols, seed=seed)
                    pairs.append((weight, self._calibration(sparsifier, self.cols, seed)))
                blocks.append(pairs)
            shares = sparsifier.layer_sparsities(blocks)
            assert len(shares) == len(blocks), pattern
            assert all(0.0 <= s < 1.0 for s in shares), (pattern, shares)
            assert abs(sum(shares) / len(shares) - sparsifier.sparsity) <= 1e-6, (pattern, shares)
            if _n_m(pattern) is not None:
                assert all(abs(s - sparsifier.sparsity) <= 1e-9 for s in shares), (pattern, shares)

    def test_sparsify_is_deterministic(self) -> None:
        for pattern in self.patterns:
            sparsifier = self.make_sparsifier(pattern)
            first = self.to_rows(sparsifier.densify(self._pruned(sparsifier, seed=7)))
            assert first == self.to_rows(sparsifier.densify(self._pruned(sparsifier, seed=7))), pattern
