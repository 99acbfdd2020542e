"""Conformance suite for :class:`sagellm.core.protocols.Quantizer`.

Core stays torch-free, so the implementer supplies weights in its own tensor
type (``make_weight``) and reads them back as nested lists (``to_rows``).
"""

from __future__ import annotations

from typing import Any

from sagellm.core.protocols import Quantizer


class QuantizerConformance:
    """Inherit and implement :meth:`make_quantizer`, :meth:`make_weight` and :meth:`to_rows`."""

    rows, cols = 16, 64

    def make_quantizer(self) -> Quantizer:
        raise NotImplementedError

    def make_weight(self, rows: int, cols: int, seed: int) -> Any:
        """A [rows, cols] weight with values of both signs and a spread of row magnitudes."""
        raise NotImplementedError

    def to_rows(self, tensor: Any) -> list[list[float]]:
        raise NotImplementedError

    def _round_trip(self, weight: Any) -> list[list[float]]:
        quantizer = self.make_quantizer()
        return self.to_rows(quantizer.dequantize(quantizer.quantize(weight)))

    def test_implements_the_protocol(self) -> None:
        assert isinstance(self.make_quantizer(), Quantizer)

    def test_bits_is_a_small_positive_int(self) -> None:
        bits = self.make_quantizer().bits
        assert isinstance(bits, int) and 1 <= bits <= 16

    def test_round_trip_keeps_the_shape(self) -> None:
        back = self._round_trip(self.make_weight(self.rows, self.cols, seed=0))
        assert len(back) == self.rows and all(len(row) == self.cols for row in back)

    def test_round_trip_error_is_within_one_step_per_row(self) -> None:
        """Each value comes back within one grid step of a per-row grid: |w - w'| <= max|row| * 2 / (2^bits - 1)."""
        weight = self.make_weight(self.rows, self.cols, seed=1)
        original, back = self.to_rows(weight), self._round_trip(weight)
        bits = self.make_quantizer().bits
        for row, row_back in zip(original, back):
            bound = max(abs(v) for v in row) * 2.0 / (2**bits - 1) + 1e-6
            assert max(abs(a - b) for a, b in zip(row, row_back)) <= bound

    def test_zeros_come_back_as_zeros(self) -> None:
        weight = self.make_weight(self.rows, self.cols, seed=2)
        zeros = self._round_trip(weight * 0)
        assert all(v == 0.0 for row in zeros for v in row)

    def test_quantize_is_deterministic(self) -> None:
        weight = self.make_weight(self.rows, self.cols, seed=3)
        assert self._round_trip(weight) == self._round_trip(weight)
