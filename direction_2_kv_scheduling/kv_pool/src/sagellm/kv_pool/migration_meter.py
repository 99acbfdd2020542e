"""Running totals of migrated blocks, bytes and copy seconds per direction, for ``stats()``.

GB/s per direction is total bytes over total copy seconds, i.e. the rate
while copies were running, not diluted by idle time between migrations.
Workers add to it concurrently, so it has its own lock (the pool lock is
not held while copying).
"""

from __future__ import annotations

import threading

from sagellm.core.types import Tier
from sagellm.core.types.kv import MigrationRate
from sagellm.kv_pool.block_copier import CopyTiming


class MigrationMeter:
    """Thread-safe per-(source, destination) accumulator of :class:`CopyTiming` records."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._totals: dict[tuple[Tier, Tier], tuple[int, int, float]] = {}

    def record(self, timings: list[CopyTiming]) -> None:
        with self._lock:
            for timing in timings:
                key = (timing.src_tier, timing.dst_tier)
                blocks, nbytes, seconds = self._totals.get(key, (0, 0, 0.0))
                self._totals[key] = (blocks + timing.num_blocks, nbytes + timing.num_bytes, seconds + timing.seconds)

    def rates(self) -> tuple[MigrationRate, ...]:
        """One :class:`MigrationRate` per direction seen, in the order directions first appeared."""
        with self._lock:
            return tuple(
                MigrationRate(src, dst, blocks, nbytes, seconds)
                for (src, dst), (blocks, nbytes, seconds) in self._totals.items()
            )
