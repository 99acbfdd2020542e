"""When requests go out: closed loop (N users), open loop (a rate), or the trace's own clock.

* closed loop -- ``concurrency`` users, each sending its next request the
  moment its previous one finishes (throughput at a fixed load);
* open loop -- arrivals at ``request_rate`` per second, Poisson (``inf``:
  all at once), whatever the server's state (latency under an offered load);
* neither -- open loop on each request's own ``arrival_s`` (trace replay).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sagellm.engines.bench.request import BenchRequest


@dataclass(frozen=True, slots=True)
class LoadPattern:
    concurrency: int | None = None
    request_rate: float | None = None

    def __post_init__(self) -> None:
        if self.concurrency is not None and self.request_rate is not None:
            raise ValueError("a load is closed loop (concurrency) or open loop (request_rate), not both")
        if self.concurrency is not None and self.concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if self.request_rate is not None and not self.request_rate > 0:
            raise ValueError("request_rate must be > 0")

    @property
    def is_closed_loop(self) -> bool:
        return self.concurrency is not None

    def describe(self) -> str:
        if self.concurrency is not None:
            return f"{self.concurrency} user{'s' if self.concurrency > 1 else ''}"
        if self.request_rate is None:
            return "trace"
        return "all at once" if math.isinf(self.request_rate) else f"{self.request_rate:g} req/s"

    def to_json(self) -> dict[str, object]:
        rate = self.request_rate
        return {
            "mode": "closed" if self.is_closed_loop else "open",
            "concurrency": self.concurrency,
            "request_rate": "inf" if rate is not None and math.isinf(rate) else rate,
            "arrivals": None if self.is_closed_loop else ("trace" if rate is None else "poisson"),
        }


def apply_load(requests: Sequence[BenchRequest], load: LoadPattern, seed: int = 0) -> list[BenchRequest]:
    """Requests with the open-loop arrival times ``load`` asks for.

    Only first turns get new arrivals; a follow-up turn's ``arrival_s`` is
    its think time after the turn before, which no rate changes.
    """
    if load.request_rate is None:
        return list(requests)
    roots = [r for r in requests if r.follows is None]
    times = poisson_arrivals(len(roots), load.request_rate, seed)
    when = {r.request_id: t for r, t in zip(roots, times)}
    return [dataclasses.replace(r, arrival_s=when[r.request_id]) if r.request_id in when else r for r in requests]


def poisson_arrivals(count: int, rate: float, seed: int = 0) -> list[float]:
    """``count`` arrival times of a Poisson process at ``rate`` per second; the first at 0."""
    if math.isinf(rate):
        return [0.0] * count
    gaps = np.random.default_rng(seed).exponential(1.0 / rate, size=max(0, count - 1))
    return [0.0, *np.cumsum(gaps).tolist()][:count]


def scale_arrivals(times: Sequence[float], time_scale: float) -> list[float]:
    """Trace arrivals relative to the first, stretched (>1) or compressed (<1) by ``time_scale``."""
    if not time_scale > 0:
        raise ValueError("time_scale must be > 0")
    start = min(times, default=0.0)
    return [(t - start) * time_scale for t in times]
