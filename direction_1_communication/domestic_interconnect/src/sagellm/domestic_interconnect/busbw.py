"""Algorithm and bus bandwidth as nccl-tests defines them, so every vendor's numbers compare.

From nccl-tests' ``doc/PERFORMANCE.md``: ``algbw = size / time``, and
``busbw = algbw * factor(n)`` where the factor turns the size a caller sees
into the bytes each rank's link must carry, independent of the rank count::

    all_reduce       2 (n - 1) / n      (reduce-scatter, then all-gather)
    all_gather           (n - 1) / n    size = the gathered output
    reduce_scatter       (n - 1) / n    size = the input before scattering
    alltoall             (n - 1) / n
    broadcast, reduce, sendrecv   1

Bandwidths are decimal GB/s (1e9 bytes), as nccl-tests and rccl-tests print.
"""

from __future__ import annotations

from collections.abc import Callable

from sagellm.core.errors import ConfigError

BUS_FACTORS: dict[str, Callable[[int], float]] = {
    "all_reduce": lambda n: 2.0 * (n - 1) / n,
    "all_gather": lambda n: (n - 1) / n,
    "reduce_scatter": lambda n: (n - 1) / n,
    "alltoall": lambda n: (n - 1) / n,
    "broadcast": lambda n: 1.0,
    "reduce": lambda n: 1.0,
    "sendrecv": lambda n: 1.0,
}


def alg_bandwidth_gbs(size_bytes: int, time_us: float) -> float:
    """``size / time`` in GB/s (bytes per microsecond / 1e3)."""
    if time_us <= 0:
        raise ConfigError(f"time must be > 0 us, got {time_us}")
    return size_bytes / time_us / 1e3


def bus_bandwidth_gbs(op: str, algbw_gbs: float, nranks: int) -> float:
    """nccl-tests' bus bandwidth for ``op`` over ``nranks`` ranks."""
    try:
        factor = BUS_FACTORS[op]
    except KeyError:
        raise ConfigError(f"unknown collective '{op}' (known: {', '.join(BUS_FACTORS)})") from None
    if nranks < 1:
        raise ConfigError(f"nranks must be >= 1, got {nranks}")
    return algbw_gbs * factor(nranks)
