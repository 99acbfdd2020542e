"""How long a step of R token rows takes on this machine: a calibrated shape, levelled by the steps run.

Speculation pays only where verifying K drafts costs less than the tokens
it saves, and that depends on the machine, the kernels and the batch. The
cost is not smooth in R: PyTorch's 4-bit CPU matmul works in blocks of 4
rows, so 4 rows cost ~1.4x one row and 5 rows ~2.5x; past 16 rows the
engine switches to dense bf16. No fixed threshold is right everywhere, so:

- the *shape* ``T_cal(R)`` is measured once per model at start-up, a
  forward pass of R rows for R on a grid (:mod:`row_cost`), and extended
  linearly past its last point (steps with a prefill run more rows);
- the *level* comes from the steps the engine really runs: each step's
  wall time minus ``T_cal`` of its rows is a residual (scheduling,
  sampling, attention over long contexts), kept as a moving average per
  row count; a row count not seen takes the residual of the nearest one
  seen below it, so between observations the calibrated shape alone says
  what more rows cost.

``predict(R) = T_cal(R) + residual(R)``. Without a calibration the shape
is zero and the prediction is the observed times, interpolated.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping

EMA_WEIGHT = 0.2  # of a new observation: steps vary by a few percent, a change in load should show in ~10 steps


class StepCostModel:
    def __init__(self, calibration: Mapping[int, float] | None = None) -> None:
        self._shape = _Curve()
        for rows, seconds in sorted((calibration or {}).items()):
            self._shape.set(rows, seconds)
        self._residual = _Curve()

    def calibrated(self, rows: int) -> float | None:
        """The start-up calibration's seconds for a forward pass of ``rows`` rows; None without one."""
        return self._shape.beyond(rows) if self._shape.keys else None

    def observe(self, rows: int, seconds: float) -> None:
        if rows < 1 or seconds <= 0.0:
            return
        residual = seconds - self._shape.beyond(rows)
        previous = self._residual.get(rows)
        self._residual.set(rows, residual if previous is None else previous + EMA_WEIGHT * (residual - previous))

    def predict(self, rows: int) -> float | None:
        """Seconds for a step of ``rows`` rows; None before any step was seen."""
        if not self._residual.keys:
            return None
        return max(1e-6, self._shape.beyond(rows) + self._residual.floor(rows))

    def ratio(self, rows: int, base_rows: int) -> float | None:
        """T(rows) / T(base_rows), e.g. the verify cost ratio T(K+1)/T(1); None until a step was seen."""
        top, base = self.predict(rows), self.predict(base_rows)
        return None if top is None or base is None else top / base

    @property
    def observed(self) -> dict[int, float]:
        """Moving-average wall time of the steps seen, per row count (the shape is fixed, so residual + shape)."""
        return {rows: self._shape.beyond(rows) + self._residual.at(rows, default=0.0) for rows in self._residual.keys}


class _Curve:
    """Values at sorted integer points, linearly interpolated between them and flat beyond them."""

    def __init__(self) -> None:
        self.keys: list[int] = []
        self._values: dict[int, float] = {}

    def get(self, key: int) -> float | None:
        return self._values.get(key)

    def set(self, key: int, value: float) -> None:
        if key not in self._values:
            bisect.insort(self.keys, key)
        self._values[key] = value

    def beyond(self, key: int) -> float:
        """Interpolated inside the points, extended along the last segment's slope past them (0 with none).

        Steps with a prefill chunk run more rows than the calibration covers
        (up to the token budget plus every sequence's drafts); a flat value
        there would price their extra rows at nothing.
        """
        if len(self.keys) < 2 or key <= self.keys[-1]:
            return self.at(key, default=0.0)
        low, high = self.keys[-2], self.keys[-1]
        slope = (self._values[high] - self._values[low]) / (high - low)
        return self._values[high] + max(0.0, slope) * (key - high)

    def floor(self, key: int) -> float:
        """The value at the nearest point at or below ``key`` (the first point's below all of them)."""
        at = bisect.bisect_right(self.keys, key)
        return self._values[self.keys[max(0, at - 1)]]

    def at(self, key: int, default: float) -> float:
        if not self.keys:
            return default
        exact = self._values.get(key)
        if exact is not None:
            return exact
        at = bisect.bisect_left(self.keys, key)
        if at == 0:
            return self._values[self.keys[0]]
        if at == len(self.keys):
            return self._values[self.keys[-1]]
        low, high = self.keys[at - 1], self.keys[at]
        share = (key - low) / (high - low)
        return self._values[low] + share * (self._values[high] - self._values[low])
