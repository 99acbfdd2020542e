"""When a request's probes say its answer has settled (DEER's confidence, Dynasor's consistency).

A probe reads the answer the model would give if it stopped thinking now.
One reading can be a lucky guess, and an early reading is often a wrong
one the reasoning later corrects, so the rule asks for both signals::

    probes:      p1    p2    p3    p4    p5
    answer:      12    None  18    18    18
    confidence:  0.9   -     0.6   0.85  ...
    stop?        no    no    no    yes         (stable_probes=2, confidence=0.8)

p4 stops: the last two answers agree (18, 18), none is None, and the
latest confidence (0.85) clears the bar. p3's 18 alone would not, nor
would p4 at confidence 0.6.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Reading:
    """One probe's answer (None: nothing could be read) and its confidence (0 to 1)."""

    answer: str | None
    confidence: float


@dataclass(frozen=True, slots=True)
class EarlyExitRule:
    """Stop when the last ``stable_probes`` answers are equal and not None and the latest is ``confidence``-sure."""

    stable_probes: int
    confidence: float

    def settled(self, readings: deque[Reading] | list[Reading]) -> bool:
        if len(readings) < self.stable_probes:
            return False
        recent = list(readings)[-self.stable_probes :]
        first = recent[0].answer
        if first is None or any(reading.answer != first for reading in recent):
            return False
        return recent[-1].confidence >= self.confidence


@dataclass(slots=True)
class RequestProbes:
    """What the accelerator keeps about one request: where it last probed and its recent readings."""

    window: int  # readings kept: the rule never looks further back than stable_probes
    last_probe_at: int = 0  # num_tokens at the last probe (forked or observed)
    num_probes: int = 0
    readings: deque[Reading] = field(init=False)

    def __post_init__(self) -> None:
        self.readings = deque(maxlen=self.window)

    def record(self, num_tokens: int, reading: Reading) -> None:
        self.last_probe_at = max(self.last_probe_at, num_tokens)
        self.num_probes += 1
        self.readings.append(reading)
