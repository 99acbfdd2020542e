"""Reusable receive buffers: a frame's payload lands in memory that is already mapped.

A fresh buffer per received transfer costs a page fault per 4 KiB on first
touch (~9 ms for 22 MiB on the 2-core test VM, as much as the copy out of
the socket itself), while a decode worker receives transfers of similar
sizes over and over. So a buffer given back once its transfer is answered is
kept (up to ``max_cached_bytes`` in all) and handed to the next frame that
fits it without wasting more than half of it.
"""

from __future__ import annotations

import threading


class BufferPool:
    """Best-fit free list of bytearrays; thread-safe (readers take, the answering thread gives back)."""

    def __init__(self, max_cached_bytes: int) -> None:
        self.max_cached_bytes = max_cached_bytes
        self._free: list[bytearray] = []  # oldest first
        self._lock = threading.Lock()

    @property
    def cached_bytes(self) -> int:
        with self._lock:
            return sum(len(b) for b in self._free)

    def take(self, nbytes: int) -> bytearray:
        """A buffer of at least ``nbytes`` (contents undefined), reused when one fits."""
        with self._lock:
            fits = [b for b in self._free if nbytes <= len(b) <= 2 * nbytes]
            if fits:
                best = min(fits, key=len)
                self._free.remove(best)
                return best
        return bytearray(nbytes)

    def give(self, buffer: bytearray) -> None:
        """Keep ``buffer`` for a later frame, dropping the oldest kept ones beyond the cap."""
        if len(buffer) > self.max_cached_bytes:
            return
        with self._lock:
            self._free.append(buffer)
            total = sum(len(b) for b in self._free)
            while total > self.max_cached_bytes:
                total -= len(self._free.pop(0))
