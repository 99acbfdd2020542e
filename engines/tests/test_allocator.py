"""Loading's freed heap goes back to the OS once the model is built (glibc), while decode keeps its reuse."""

from __future__ import annotations

import ctypes.util
from pathlib import Path

import numpy as np
import pytest

from sagellm.engines.bench.peak_memory import current_rss_mb
from sagellm.engines.runtime.allocator import keep_freed_memory, return_freed_heap

glibc = pytest.mark.skipif(
    ctypes.util.find_library("c") is None or not Path("/proc/self/status").exists(), reason="needs glibc and /proc"
)


def rss_mib() -> float:
    rss = current_rss_mb()
    assert rss is not None
    return rss


@glibc
def test_freed_load_scratch_is_released() -> None:
    assert keep_freed_memory()  # freed heap below 128 MiB stays resident from here on...
    scratch = [np.ones(1 << 17) for _ in range(100)]  # 1 MiB each, written: heap, under the mmap threshold
    del scratch
    held = rss_mib()
    assert return_freed_heap()  # ...until the builder hands it back after loading
    assert held - rss_mib() > 50, "malloc_trim returned less than half of 100 MiB freed"
