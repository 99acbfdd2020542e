"""Measured overlap per call kind: what an engine reports next to its throughput.

For one call, or summed over many of one kind::

    T_comp   seconds the compute side ran
    T_comm   seconds the communication side ran
    T_both   wall seconds from handing the work over to having both results

    E    = (T_comp + T_comm - T_both) / min(T_comp, T_comm)
    idle = max(0, T_both - T_comp) / T_both

E is the share of the shorter side that was hidden under the longer one:
1 when ``T_both == max(T_comp, T_comm)``, 0 when the two ran back to back
(``T_both == T_comp + T_comm``), below 0 when the hand-off cost more than
it hid. ``idle`` is the share of wall time the compute side was not
computing (waiting for communication, or for the manager): the accelerator
idle time a serving engine cares about.

The manager measures T_comp and T_comm while both run, so contention for
cores or memory bandwidth lengthens them and flatters E; the benchmark
therefore times each side alone as well and computes E from those.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass


def overlap_efficiency(t_comp: float, t_comm: float, t_both: float) -> float | None:
    """E as defined above; None when either side took no time (nothing to hide)."""
    shorter = min(t_comp, t_comm)
    if shorter <= 0.0:
        return None
    return (t_comp + t_comm - t_both) / shorter


def idle_share(t_comp: float, t_both: float) -> float | None:
    """Share of wall time the compute side waited; None for an empty interval."""
    if t_both <= 0.0:
        return None
    return max(0.0, t_both - t_comp) / t_both


@dataclass(frozen=True, slots=True)
class KindStats:
    """Totals of one call kind (``"schedule"``, ``"start"``, or a name the caller gave)."""

    calls: int = 0
    t_comp_s: float = 0.0
    t_comm_s: float = 0.0
    t_both_s: float = 0.0

    @property
    def efficiency(self) -> float | None:
        return overlap_efficiency(self.t_comp_s, self.t_comm_s, self.t_both_s)

    @property
    def idle_share(self) -> float | None:
        return idle_share(self.t_comp_s, self.t_both_s)

    def plus(self, t_comp: float, t_comm: float, t_both: float) -> KindStats:
        return KindStats(self.calls + 1, self.t_comp_s + t_comp, self.t_comm_s + t_comm, self.t_both_s + t_both)

    def to_dict(self) -> dict[str, float | int | None]:
        return {
            "calls": self.calls,
            "t_comp_s": self.t_comp_s,
            "t_comm_s": self.t_comm_s,
            "t_both_s": self.t_both_s,
            "efficiency": self.efficiency,
            "idle_share": self.idle_share,
        }


class OverlapStats:
    """Thread-safe totals per call kind; the manager records, the engine reads :meth:`snapshot`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kinds: dict[str, KindStats] = {}

    def record(self, kind: str, t_comp: float, t_comm: float, t_both: float) -> None:
        with self._lock:
            self._kinds[kind] = self._kinds.get(kind, KindStats()).plus(t_comp, t_comm, t_both)

    def snapshot(self) -> dict[str, KindStats]:
        with self._lock:
            return dict(self._kinds)

    def reset(self) -> None:
        with self._lock:
            self._kinds.clear()

    def to_dict(self) -> dict[str, dict[str, float | int | None]]:
        return {kind: stats.to_dict() for kind, stats in sorted(self.snapshot().items())}
