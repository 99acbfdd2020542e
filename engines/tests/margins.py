"""Numeric checks report how close they came to their bound.

A tolerance that passes says nothing about how much room was left: a bound
sitting at 95 % of its budget on one CPU breaks on the next one's summation
order. Checks that compare numbers across implementations call
:func:`record_margin`, and ``conftest.py`` prints every record at the end
of the run, so a CI log shows the margin of each check on the machine it
ran on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Margin:
    check: str  # the test that made it, and what it measured
    observed: float
    bound: float
    higher_is_better: bool = False  # True for agreement shares: the bound is a floor

    def describe(self) -> str:
        relation = ">=" if self.higher_is_better else "<="
        ok = self.observed >= self.bound if self.higher_is_better else self.observed <= self.bound
        used = f" ({self.observed / self.bound:.0%} of it)" if not self.higher_is_better and self.bound else ""
        verdict = "" if ok else "  <- outside the bound"
        return f"{self.check}: {self.observed:.3g} {relation} {self.bound:.3g}{used}{verdict}"


MARGINS: list[Margin] = []


def record_margin(what: str, observed: float, bound: float, higher_is_better: bool = False) -> None:
    """Remember one comparison of the running test (printed in the terminal summary)."""
    test = os.environ.get("PYTEST_CURRENT_TEST", "?").rsplit(" ", 1)[0].rsplit("/", 1)[-1]
    MARGINS.append(Margin(f"{test} {what}", observed, bound, higher_is_better))
