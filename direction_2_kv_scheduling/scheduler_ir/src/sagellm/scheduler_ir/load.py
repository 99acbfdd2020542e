"""Is the engine loaded? Queue length and KV pressure, with hysteresis.

The adaptive policy runs FIFO while the engine keeps up and an SLO or
priority policy when it does not. A single threshold would flap: one step
over it switches, admitting a few requests brings it back under, the next
step switches again, and the order requests are served in would change
every step. Two thresholds per signal give a band in which the mode stays::

    kv_usage  0 ........ kv_low ======== kv_high ........ 1
                 calm    |   keep mode    |   loaded
                 (if the queue is short too)

The monitor turns *loaded* when either signal reaches its high mark, and
*calm* again only when both are at or below their low marks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sagellm.core.errors import ConfigError
from sagellm.core.types import SchedulerState


@dataclass(frozen=True, slots=True)
class Load:
    """What the monitor looks at in one snapshot."""

    num_waiting: int
    kv_usage: float  # blocks held by running sequences / (held + free)

    @classmethod
    def of(cls, state: SchedulerState) -> Load:
        held = sum(v.num_blocks_held for v in state.running)
        total = held + state.num_free_blocks
        return cls(len(state.waiting), held / total if total > 0 else 0.0)


@dataclass(slots=True)
class LoadMonitor:
    """Two-threshold switch between calm and loaded; counts its switches."""

    queue_high: int = 32
    queue_low: int = 8
    kv_high: float = 0.9
    kv_low: float = 0.7
    is_loaded: bool = False
    num_switches: int = 0

    def __post_init__(self) -> None:
        for name in ("queue_high", "queue_low"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"{name} must be an integer >= 0 (got {value!r})")
        for name in ("kv_high", "kv_low"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} must be a fraction in [0, 1] (got {value!r})")
        if self.queue_low >= self.queue_high or self.kv_low >= self.kv_high:
            raise ConfigError(
                "hysteresis needs low < high: "
                f"queue_low={self.queue_low}, queue_high={self.queue_high}, kv_low={self.kv_low}, kv_high={self.kv_high}"
            )

    def update(self, load: Load) -> bool:
        """Take one snapshot's load into account; return whether the engine counts as loaded now."""
        if self.is_loaded:
            switch = load.num_waiting <= self.queue_low and load.kv_usage <= self.kv_low
        else:
            switch = load.num_waiting >= self.queue_high or load.kv_usage >= self.kv_high
        if switch:
            self.is_loaded = not self.is_loaded
            self.num_switches += 1
        return self.is_loaded
