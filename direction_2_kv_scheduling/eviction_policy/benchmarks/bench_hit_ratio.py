"""Block hit ratio of every policy on a real-shaped trace at several cache sizes, Belady's optimum alongside.

Replays the Mooncake-style trace (``hash_ids`` per request) through a
prefix cache (see :class:`sagellm.eviction_policy.sim.PrefixCacheReplay`)
once per policy and cache size. Besides the six policies it runs two
variants that show where gains come from: ``lru+tail`` (LRU that ranks the
blocks of one instant tail first, the ordering every new policy uses) and
``s3fifo-tuned`` (ghost 3× capacity, small queue 20 %: the best S3-FIFO
setting of a sweep on this trace — tuned here, so read it as an optimistic
bound, not a default).

    python benchmarks/bench_hit_ratio.py [--trace PATH] [--quick] [--out DIR]

Default trace: ``<repo>/../shared/data/traces/mooncake_synthetic_trace.jsonl``;
without it, a synthetic multi-turn trace (and a note saying so). ``--quick``
(CI): the first 2,000 requests at 1 %, 5 % and 20 % of the unique blocks.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

from sagellm.eviction_policy import POLICIES, LRUEvictionPolicy, S3FIFOEvictionPolicy
from sagellm.eviction_policy.sim import Trace, load_trace, parse_sizes, run_sweep, synthetic_trace
from sagellm.eviction_policy.sim.sweep import DEFAULT_SHARES, PolicyFactory, Sweep

REPO = Path(__file__).resolve().parents[3]
DEFAULT_TRACE = REPO.parent / "shared" / "data" / "traces" / "mooncake_synthetic_trace.jsonl"
QUICK_REQUESTS = 2000
QUICK_SHARES = ("1%", "5%", "20%")

VARIANTS: dict[str, PolicyFactory] = {
    **POLICIES,
    "lru+tail": lambda: LRUEvictionPolicy(tail_first=True),
    "s3fifo-tuned": lambda: S3FIFOEvictionPolicy(ghost_ratio=3.0, small_ratio=0.2),
}


def pick_trace(path: Path | None, quick: bool) -> tuple[Trace, str]:
    """The trace to replay and a line saying where it came from."""
    if path is None and not DEFAULT_TRACE.is_file():
        trace = synthetic_trace(num_requests=1000 if quick else 4000, num_sessions=300)
        return trace, f"{DEFAULT_TRACE} not found: synthetic multi-turn trace ({len(trace.requests)} requests)"
    source = path or DEFAULT_TRACE
    trace = load_trace(source)
    if quick:
        trace = Trace(requests=trace.requests[:QUICK_REQUESTS], name=trace.name)
    return trace, f"{source} ({len(trace.requests):,} requests{', first ones only: --quick' if quick else ''})"


def report(sweep: Sweep, source: str, command: str, seconds: float) -> str:
    best = []
    for row in sweep.rows:
        winner, gain = row.best(), row.gain_over_baseline()
        if winner is not None and gain is not None:
            best.append(f"{row.capacity / sweep.unique_blocks:.0%}: {winner[0]} {100 * gain:+.1f} %")
    return (
        f"Trace: {source}; {sweep.accesses:,} block lookups, {sweep.unique_blocks:,} unique blocks "
        f"(an infinite cache hits {100 * sweep.compulsory_hit_ratio:.2f} %). `{command}`, {seconds:.0f} s.\n\n"
        "Block hit ratio:\n\n" + sweep.markdown("hit_ratio") + "\nPrefill compute saved "
        "(block d costs 1 + 0.02·d):\n\n" + sweep.markdown("saved_ratio") + "\nBest vs LRU: " + "; ".join(best) + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trace", type=Path, default=None, help=f"jsonl trace (default {DEFAULT_TRACE})")
    parser.add_argument("--quick", action="store_true", help="CI: first 2,000 requests, 3 cache sizes")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    trace, source = pick_trace(args.trace, args.quick)
    shares = QUICK_SHARES if args.quick else tuple(f"{100 * s:g}%" for s in DEFAULT_SHARES)
    sizes = parse_sizes(shares, trace.unique_blocks())
    start = time.perf_counter()
    sweep = run_sweep(trace, sizes, VARIANTS, progress=sys.stderr.isatty())
    seconds = time.perf_counter() - start
    command = "python benchmarks/bench_hit_ratio.py" + (" --quick" if args.quick else "")
    text = report(sweep, source, command, seconds)
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"python": platform.python_version(), "quick": args.quick, "source": source, "seconds": seconds}
    (args.out / "bench_hit_ratio.json").write_text(json.dumps({"meta": meta, **sweep.to_json()}, indent=2))
    (args.out / "bench_hit_ratio.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
