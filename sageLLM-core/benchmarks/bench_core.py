"""Micro-benchmarks of sagellm-core's per-request and per-step overheads.

    python benchmarks/bench_core.py [--quick] [--out DIR]

Writes ``bench_core.json`` and ``bench_core.md`` to DIR (default:
``benchmarks/results/``). Each figure is the best of several repeats
(the least disturbed run), divided by the calls per repeat. Where a simple
peer exists it is measured in the same run and the ratio reported, so the
numbers say what the abstraction costs rather than how fast this machine is.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import timeit
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sagellm.core import __version__, load_config, registry
from sagellm.core.config import EvictionPolicySection
from sagellm.core.metrics import MetricsRegistry
from sagellm.core.types import BlockId, EvictionContext, Request, SamplingParams

UNITS = {"ns": 1e9, "µs": 1e6, "ms": 1e3}


@dataclass(slots=True)
class Result:
    name: str
    unit: str
    value: float  # time per call in ``unit``
    peer: str | None = None
    peer_value: float | None = None

    @property
    def ratio(self) -> float | None:
        """How many times slower than the peer (1.0 = free)."""
        return self.value / self.peer_value if self.peer_value else None


def per_call(fn: Callable[[], object], number: int, repeat: int, unit: str) -> float:
    """Best-of-``repeat`` seconds per call, in ``unit``."""
    best = min(timeit.repeat(fn, number=number, repeat=repeat))
    return best / number * UNITS[unit]


# --------------------------------------------------------------------------- peers and fixtures


@dataclass(frozen=True, slots=True)
class PlainSamplingParams:
    """SamplingParams' fields without validation: the floor a frozen dataclass costs."""

    max_tokens: int = 16
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False
    logprobs: int | None = None


class BenchLRU:
    """A structural EvictionPolicy for the registry benchmark."""

    def __init__(self, capacity: int = 0) -> None:
        self.capacity = capacity
        self._order: OrderedDict[BlockId, None] = OrderedDict()

    @property
    def name(self) -> str:
        return "bench_lru"

    def on_insert(self, block_id: BlockId, now: float = 0.0) -> None:
        self._order[block_id] = None

    def on_access(self, block_id: BlockId, now: float = 0.0) -> None:
        self._order.move_to_end(block_id)

    def on_remove(self, block_id: BlockId) -> None:
        self._order.pop(block_id, None)

    def select_victims(self, context: EvictionContext) -> list[BlockId]:
        return [b for b in self._order if context.is_evictable(b)][: context.num_blocks]

    def __len__(self) -> int:
        return len(self._order)


YAML = """\
kv_pool:
  block_size: 32
  num_blocks: 4096
scheduler_ir:
  implementation: fifo
  max_num_seqs: 128
eviction_policy:
  implementation: lru
  options: {capacity: 1024}
"""


# --------------------------------------------------------------------------- benchmarks


def bench_sampling_params(scale: int) -> list[Result]:
    kwargs: dict[str, Any] = {"max_tokens": 128, "temperature": 0.7, "top_p": 0.9, "top_k": 40, "stop": ("\n\n",)}
    number, repeat = 2000 * scale, 5
    ours = per_call(lambda: SamplingParams(**kwargs), number, repeat, "µs")
    plain = per_call(lambda: PlainSamplingParams(**kwargs), number, repeat, "µs")
    default = per_call(SamplingParams, number, repeat, "µs")
    request = per_call(lambda: Request("r", (1, 2, 3, 4)), number, repeat, "µs")
    return [
        Result("SamplingParams(...) construction", "µs", ours, "dataclass, no validation", plain),
        Result("SamplingParams() defaults", "µs", default),
        Result("Request(...) construction (default sampling)", "µs", request),
    ]


def bench_load_config(scale: int) -> list[Result]:
    number, repeat = 20 * scale, 5
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sagellm.yaml"
        path.write_text(YAML)
        from_yaml = per_call(lambda: load_config(path), number, repeat, "ms")
    defaults = per_call(load_config, number, repeat, "ms")
    return [
        Result("load_config() defaults", "ms", defaults),
        Result("load_config(yaml) 3 sections", "ms", from_yaml),
    ]


def bench_registry(scale: int) -> list[Result]:
    registry.register("eviction_policy", "bench_lru", BenchLRU)
    try:
        section = EvictionPolicySection(implementation="bench_lru", options={"capacity": 8})
        number, repeat = 2000 * scale, 5
        created = per_call(lambda: registry.create_eviction_policy(section), number, repeat, "µs")
        direct = per_call(lambda: BenchLRU(capacity=8), number, repeat, "µs")
        scan = per_call(lambda: registry.available("eviction_policy"), 5 * scale, 3, "ms")
    finally:
        registry.unregister("eviction_policy", "bench_lru")
    return [
        Result("registry.create() in-process factory", "µs", created, "BenchLRU(capacity=8)", direct),
        Result("registry.available() entry-point scan", "ms", scan),
    ]


def bench_metrics(scale: int) -> list[Result]:
    reg = MetricsRegistry()
    hist = reg.histogram("bench_seconds")
    counter = reg.counter("bench_total")
    raw_counts = [0] * (len(hist.buckets) + 1)
    number, repeat = 20000 * scale, 5

    def peer_observe() -> None:  # the same work inlined: a list bump, no method call
        raw_counts[2] += 1

    observe = per_call(lambda: hist.observe(0.0123), number, repeat, "ns")
    peer = per_call(peer_observe, number, repeat, "ns")
    inc = per_call(counter.inc, number, repeat, "ns")
    lookup = per_call(lambda: reg.histogram("bench_seconds"), number, repeat, "ns")
    for i in range(50):
        reg.histogram(f"h{i}").observe(i / 10)
    render = per_call(reg.render_prometheus, 20 * scale, 3, "ms")
    return [
        Result("Histogram.observe()", "ns", observe, "list[i] += 1 in a function", peer),
        Result("Counter.inc()", "ns", inc),
        Result("MetricsRegistry.histogram(name) lookup", "ns", lookup),
        Result("render_prometheus() 52 metrics", "ms", render),
    ]


BENCHES = [bench_sampling_params, bench_load_config, bench_registry, bench_metrics]


# --------------------------------------------------------------------------- output


def machine() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "sagellm_core": __version__,
    }


def to_markdown(results: list[Result], info: dict[str, str], quick: bool) -> str:
    lines = [
        f"# sagellm-core micro-benchmarks{' (--quick)' if quick else ''}",
        "",
        f"Python {info['python']} ({info['implementation']}), {info['platform']}, sagellm-core {info['sagellm_core']}",
        "",
        "| benchmark | time | peer | peer time | ratio |",
        "|---|---:|---|---:|---:|",
    ]
    for r in results:
        peer_time = f"{r.peer_value:.3g} {r.unit}" if r.peer_value is not None else ""
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else ""
        lines.append(f"| {r.name} | {r.value:.3g} {r.unit} | {r.peer or ''} | {peer_time} | {ratio} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="few iterations (CI smoke, a few seconds)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results", help="output directory")
    args = parser.parse_args(argv)
    scale = 1 if args.quick else 10
    results = [r for bench in BENCHES for r in bench(scale)]
    info = machine()
    args.out.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "bench_core",
        "quick": args.quick,
        "machine": info,
        "results": [{**asdict(r), "ratio": r.ratio} for r in results],
    }
    (args.out / "bench_core.json").write_text(json.dumps(payload, indent=2) + "\n")
    markdown = to_markdown(results, info, args.quick)
    (args.out / "bench_core.md").write_text(markdown)
    sys.stdout.write(markdown)
    sys.stdout.write(f"\nwrote {args.out / 'bench_core.json'} and {args.out / 'bench_core.md'}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
