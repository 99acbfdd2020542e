"""Hit ratio of several policies at several cache sizes on one trace, with Belady's optimum alongside."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sagellm.core.errors import ConfigError
from sagellm.core.protocols import EvictionPolicy, LifetimePredictor
from sagellm.eviction_policy.registry import POLICIES
from sagellm.eviction_policy.sim.belady import BeladyEvictionPolicy, FutureAccesses
from sagellm.eviction_policy.sim.progress import Progress
from sagellm.eviction_policy.sim.replay import PrefixCacheReplay, ReplayResult
from sagellm.eviction_policy.sim.trace import Trace

DEFAULT_SHARES = (0.01, 0.02, 0.05, 0.10, 0.20, 0.40)
"""Default cache sizes: shares of the trace's unique blocks (the size at which nothing is ever evicted)."""

BELADY = "belady"
BASELINE = "lru"


@dataclass(frozen=True, slots=True)
class SweepRow:
    """All policies at one cache size."""

    capacity: int
    results: dict[str, ReplayResult]
    seconds: dict[str, float] = field(default_factory=dict)

    def best(self) -> tuple[str, float] | None:
        """The online policy (not Belady) with the highest hit ratio, and its ratio."""
        online = {name: r.hit_ratio for name, r in self.results.items() if name != BELADY}
        if not online:
            return None
        name = max(online, key=lambda n: online[n])
        return name, online[name]

    def gain_over_baseline(self) -> float | None:
        """Relative hit-ratio gain of the best online policy over LRU (0.1 = +10 %)."""
        best, base = self.best(), self.results.get(BASELINE)
        if best is None or base is None or base.hit_ratio == 0:
            return None
        return best[1] / base.hit_ratio - 1


@dataclass(frozen=True, slots=True)
class Sweep:
    trace: str
    num_requests: int
    unique_blocks: int
    accesses: int
    policies: tuple[str, ...]
    rows: tuple[SweepRow, ...]

    @property
    def compulsory_hit_ratio(self) -> float:
        """Hit ratio of an infinite cache: every block misses once, then always hits."""
        return 1.0 - self.unique_blocks / self.accesses if self.accesses else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "trace": self.trace,
            "num_requests": self.num_requests,
            "unique_blocks": self.unique_blocks,
            "accesses": self.accesses,
            "infinite_cache_hit_ratio": self.compulsory_hit_ratio,
            "policies": list(self.policies),
            "rows": [
                {
                    "capacity_blocks": row.capacity,
                    "share_of_unique": row.capacity / self.unique_blocks,
                    "results": {
                        name: {
                            "hit_ratio": r.hit_ratio,
                            "hits": r.hits,
                            "evictions": r.evictions,
                            "prefill_saved_ratio": r.saved_ratio,
                            "seconds": row.seconds.get(name),
                        }
                        for name, r in row.results.items()
                    },
                }
                for row in self.rows
            ],
        }

    def markdown(self, metric: str = "hit_ratio") -> str:
        """Per policy and size, ``hit_ratio`` (block hits) or ``saved_ratio`` (prefill compute saved),
        with the best online policy's gain over LRU; Belady last."""
        names = [n for n in self.policies if n != BELADY] + [BELADY]
        head = "| cache blocks | share | " + " | ".join(names) + " | best vs lru |\n"
        head += "|---:|---:|" + "---:|" * len(names) + "---|\n"
        lines = []
        for row in self.rows:
            cells = [f"{100 * getattr(row.results[n], metric):.2f} %" for n in names]
            share = f"{row.capacity / self.unique_blocks:.0%}"
            lines.append(f"| {row.capacity:,} | {share} | " + " | ".join(cells) + f" | {_gain(row, metric)} |")
        return head + "\n".join(lines) + "\n"


def _gain(row: SweepRow, metric: str) -> str:
    online = {name: getattr(r, metric) for name, r in row.results.items() if name != BELADY}
    base = online.get(BASELINE)
    if not online or not base:
        return "–"
    best = max(online, key=lambda n: online[n])
    return f"{best} {100 * (online[best] / base - 1):+.1f} %"


def parse_sizes(specs: Iterable[str], unique_blocks: int) -> list[int]:
    """Cache sizes from ``"500"`` (blocks) or ``"5%"`` (share of unique blocks); commas split too."""
    sizes: list[int] = []
    for spec in (part.strip() for item in specs for part in item.split(",")):
        if not spec:
            continue
        try:
            value = float(spec[:-1]) / 100 * unique_blocks if spec.endswith("%") else float(spec)
        except ValueError:
            raise ConfigError(f"cache size '{spec}': expected a number of blocks or a percentage like '5%'") from None
        if not math.isfinite(value) or value < 1:
            raise ConfigError(f"cache size '{spec}' is below one block (the trace has {unique_blocks:,} unique blocks)")
        sizes.append(int(value))
    if not sizes:
        raise ConfigError("no cache sizes given")
    return sorted(set(sizes))


def default_sizes(unique_blocks: int) -> list[int]:
    return sorted({max(1, int(share * unique_blocks)) for share in DEFAULT_SHARES})


PolicyFactory = Callable[[], EvictionPolicy]


def policy_factories(
    names: Iterable[str],
    options: Mapping[str, Mapping[str, Any]] | None = None,
    predictor: Callable[[], LifetimePredictor] | None = None,
) -> dict[str, PolicyFactory]:
    """A fresh-policy factory per name of :data:`POLICIES`; ``predictor`` builds the learned policy's."""
    options = options or {}
    unknown = [n for n in list(names) + list(options) if n not in POLICIES]
    if unknown:
        raise ConfigError(f"unknown policy '{unknown[0]}' (available: {', '.join(POLICIES)}; Belady always runs)")
    factories: dict[str, PolicyFactory] = {}
    for name in names:
        factories[name] = _factory(name, dict(options.get(name, {})), predictor if name == "learned" else None)
    for name, make in factories.items():  # a bad option fails now, not after minutes of replay
        try:
            make()
        except TypeError as exc:
            raise ConfigError(f"options for '{name}': {exc}") from None
    return factories


def _factory(name: str, options: dict[str, Any], predictor: Callable[[], LifetimePredictor] | None) -> PolicyFactory:
    policy_cls = POLICIES[name]
    if predictor is None:
        return lambda: policy_cls(**options)
    return lambda: policy_cls(predictor=predictor(), **options)


def run_sweep(
    trace: Trace,
    capacities: Iterable[int],
    factories: Mapping[str, PolicyFactory],
    depth_cost: float = 0.02,
    progress: bool = True,
) -> Sweep:
    """Replay ``trace`` once per (size, policy), plus Belady at every size."""
    capacities = list(capacities)
    depths = trace.depths()
    runs = len(capacities) * (len(factories) + 1)
    rows = []
    with Progress(runs * len(trace.requests), f"replaying {trace.name}", enabled=progress) as bar:
        for capacity in capacities:
            row = SweepRow(capacity, {}, {})
            for name, make in factories.items():
                _replay(row, name, PrefixCacheReplay(make(), capacity, depths, depth_cost=depth_cost), trace, bar)
            future = FutureAccesses(trace)
            belady = PrefixCacheReplay(BeladyEvictionPolicy(future), capacity, depths, future, depth_cost)
            _replay(row, BELADY, belady, trace, bar)
            rows.append(row)
    return Sweep(
        trace=trace.name,
        num_requests=len(trace.requests),
        unique_blocks=trace.unique_blocks(),
        accesses=trace.num_accesses,
        policies=(*factories, BELADY),
        rows=tuple(rows),
    )


def _replay(row: SweepRow, name: str, replay: PrefixCacheReplay, trace: Trace, bar: Progress) -> None:
    start = time.perf_counter()
    row.results[name] = replay.run(trace, on_request=bar.update)
    row.seconds[name] = time.perf_counter() - start
