"""Keep freed memory in the process instead of handing it back to the OS at once.

glibc serves allocations above its mmap threshold (128 KiB, adapting up to
32 MiB) with fresh ``mmap`` pages and unmaps them on free, so a tensor of a
few MiB made and dropped every layer (attention's gathered K/V) pays a page
fault per 4 KiB every time. Measured on 2 cores: gathering 64 sequences x
1,008 tokens of fp32 K took 22 ms with the default and 3.2 ms with a high
threshold. PyTorch's CPU tuning guide gets the same effect from jemalloc or
tcmalloc; ``mallopt`` needs no extra library.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# Below 64 MiB from the heap: per-layer gathers (25 MB for 64 sequences x 1k tokens in bf16) reuse it.
# Above, mmap as before, so a KV pool or a model's big tensors go back to the OS when an engine is dropped
# (a 1 GiB threshold kept ~1 GiB per engine built in one process: tests and benchmarks build many).
_MMAP_THRESHOLD_BYTES = 64 << 20
_TRIM_THRESHOLD_BYTES = 128 << 20  # keep up to 128 MiB of freed heap top for reuse


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (it has ``mallopt`` and ``malloc_trim``); None elsewhere (musl, macOS)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


@functools.cache
def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds once per process; False where there is no glibc."""
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)) and bool(
        libc.mallopt(M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES)
    )


def return_freed_heap() -> bool:
    """Hand the heap freed so far back to the OS now (glibc's ``malloc_trim``); False without glibc.

    The raised trim threshold above keeps freed heap for reuse, which is right for decode's per-layer
    buffers but leaves one-off garbage resident: the builder calls this once after loading (90-320 MB
    of parsed metadata and dense scratch on the 0.27-1.5B GGUFs), before warm-up touches what decoding
    reuses; benchmarks call it between runs, after dropping an engine.
    """
    libc = _glibc()
    return libc is not None and bool(libc.malloc_trim(0))
