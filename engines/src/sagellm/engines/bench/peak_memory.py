"""Memory of the benchmarked process: ``peak_mem_mb`` for the in-process engine.

Per run, not per process: the model load's transient peak (and the KV
pools of earlier runs) would otherwise dominate every later run's number.
On CPU the resident set is sampled after every engine step; on CUDA torch's
own allocator high-water mark is reset at the start of each run.
"""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path

import torch

from sagellm.engines.runtime.allocator import return_freed_heap

STATM = Path("/proc/self/statm")


class MemoryWatermark:
    """The highest memory use seen since it was created (one per run)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._peak_mb: float | None = None
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        self.sample()

    def sample(self) -> None:
        if self.device.type == "cuda":
            return  # torch tracks the CUDA peak itself
        now = current_rss_mb()
        if now is not None:
            self._peak_mb = now if self._peak_mb is None else max(self._peak_mb, now)

    @property
    def peak_mb(self) -> float | None:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        return self._peak_mb if self._peak_mb is not None else process_peak_rss_mb()


def current_rss_mb() -> float | None:
    """Resident set size now (Linux); None elsewhere."""
    try:
        return int(STATM.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return None


def process_peak_rss_mb() -> float | None:
    """The process's lifetime peak RSS: the fallback where /proc is missing."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def release_freed_memory() -> None:
    """Free unreachable engines now and hand their memory back to the OS.

    An engine sits in reference cycles, so its KV pool (1 GiB by default)
    outlives it until the cycle collector runs; and the engine raises
    glibc's trim threshold (``runtime/allocator.py``), so freed heap is
    kept rather than returned -- and, fragmented, not always reused: without
    this, every run of a suite added a pool to the process (9 GB after Q8).
    """
    gc.collect()
    return_freed_heap()
