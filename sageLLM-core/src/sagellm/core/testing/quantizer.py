"""Conformance suites for :class:`sagellm.core.protocols.Quantizer` and :class:`LinearQuantizer`.

Core stays torch-free, so the implementer supplies weights in its own tensor
type (``make_weight``) and reads them back as nested lists (``to_rows``).
"""

from __future__ import annotations

from typing import Any

from sagellm.core.protocols import CalibrationObserver, LinearQuantizer, Quantizer


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


class LinearQuantizerConformance(QuantizerConformance):
    """Adds the engine's side of :class:`LinearQuantizer`: its kernel computes the layer, its observer is fresh.

    Inputs come from :meth:`make_weight` too (a [rows, cols] tensor of both
    signs). ``linear_tolerance`` bounds the relative L2 error of
    ``linear(x, quantize(w))`` against the exact float ``x @ w.T``:
    weights and (for W8A8) activations are rounded to the quantizer's grid.
    """

    batch = 8
    linear_tolerance = 0.05

    def _calibrated(self, quantizer: LinearQuantizer, weight: Any, x: Any) -> Any:
        observer = quantizer.calibration_observer()
        if observer is None:
            return quantizer.quantize(weight)
        observer.observe(x)
        return quantizer.quantize(weight, calibration=observer.result)

    def test_implements_the_linear_protocol(self) -> None:
        assert isinstance(self.make_quantizer(), LinearQuantizer)

    def test_linear_computes_the_layer(self) -> None:
        quantizer = self.make_quantizer()
        assert isinstance(quantizer, LinearQuantizer)
        weight = self.make_weight(self.rows, self.cols, seed=4)
        x = self.make_weight(self.batch, self.cols, seed=5)
        got = self.to_rows(quantizer.linear(x, self._calibrated(quantizer, weight, x)))
        w, inputs = self.to_rows(weight), self.to_rows(x)
        want = [[sum(a * b for a, b in zip(row, w_row)) for w_row in w] for row in inputs]
        assert len(got) == self.batch and all(len(row) == self.rows for row in got)
        error = sum((g - e) ** 2 for gr, er in zip(got, want) for g, e in zip(gr, er)) ** 0.5
        norm = sum(e**2 for er in want for e in er) ** 0.5
        assert error <= self.linear_tolerance * norm, f"relative error {error / norm:.4f}"

    def test_observers_are_optional_fresh_and_independent(self) -> None:
        quantizer = self.make_quantizer()
        assert isinstance(quantizer, LinearQuantizer)
        first, second = quantizer.calibration_observer(), quantizer.calibration_observer()
        if first is None:
            assert second is None  # a quantizer either calibrates or it does not
            return
        assert isinstance(first, CalibrationObserver) and isinstance(second, CalibrationObserver)
        assert first is not second and first.result is None
        first.observe(self.make_weight(self.batch, self.cols, seed=6))
        assert first.result is not None and second.result is None
