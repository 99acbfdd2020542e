"""Cost of ``predict`` and ``observe`` of the online predictor, next to a per-call numpy model.

    python benchmarks/bench_lifetime_predictor.py [--quick] [--out DIR]

The predictor is first trained on the bundled Mooncake trace's block uses;
then ``predict`` is timed on those uses' records at their own times (the
mix of feature keys a cache sees) — each call timed alone, p50/p99 — and
``observe`` as the mean over a stream (its numpy fits amortised). The
peer computes the same answer by evaluating the model with numpy on every
call (no per-key table), the obvious way to serve a numpy-trained model.
Target (issue 5): predict < 5 us. Writes ``bench_lifetime_predictor.json``
and ``.md`` into ``--out`` (default ``benchmarks/results/``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from sagellm.core.types import KVBlockMeta
from sagellm.lifetime_predictor import OnlineLifetimePredictor, encode
from sagellm.lifetime_predictor.horizon_model import interpolate_cdf, inverse_cdf
from sagellm.lifetime_predictor.trace_uses import BlockUse, load_uses

DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def trained(uses: list[BlockUse]) -> OnlineLifetimePredictor:
    predictor = OnlineLifetimePredictor()
    for use in uses:
        predictor.observe(use.meta, use.next_gap_s)
    predictor.flush()
    return predictor


def numpy_per_call(predictor: OnlineLifetimePredictor) -> Callable[[KVBlockMeta, float], float]:
    """The same median-remaining-wait, with the model evaluated by numpy at each call."""
    model, horizons = predictor.model, list(predictor.model.horizons)

    def predict(meta: KVBlockMeta, now: float) -> float:
        cdf = model.cdf(encode(meta))
        idle = max(0.0, now - meta.last_access)
        returned = interpolate_cdf(horizons, cdf, idle)
        return max(0.0, inverse_cdf(horizons, cdf, returned + 0.5 * (1.0 - returned)) - idle)

    return predict


def per_call_us(fn: Callable[[KVBlockMeta, float], float], queries: list[tuple[KVBlockMeta, float]]) -> list[float]:
    samples = []
    clock = time.perf_counter
    for meta, now in queries:
        start = clock()
        fn(meta, now)
        samples.append((clock() - start) * 1e6)
    return samples


def observe_us(uses: list[BlockUse]) -> float:
    predictor = OnlineLifetimePredictor()
    start = time.perf_counter()
    for use in uses:
        predictor.observe(use.meta, use.next_gap_s)
    return (time.perf_counter() - start) * 1e6 / len(uses)


def pct(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100)[q - 1] if len(samples) > 1 else samples[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smoke-test size (a few seconds)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    args = parser.parse_args(argv)
    uses = load_uses(limit=400 if args.quick else None)
    predictor = trained(uses)
    queries = [(u.meta, u.time_s + 30.0) for u in uses[:: 4 if args.quick else 1]][:20_000]
    per_call_us(predictor.predict, queries)  # warm the per-key tables, as a running cache has them
    ours = per_call_us(predictor.predict, queries)
    peer = per_call_us(numpy_per_call(predictor), queries[:2_000])
    result = {
        "benchmark": "lifetime_predictor",
        "quick": args.quick,
        "block_uses": len(uses),
        "queries": len(queries),
        "predict_p50_us": pct(ours, 50),
        "predict_p99_us": pct(ours, 99),
        "numpy_per_call_p50_us": pct(peer, 50),
        "numpy_per_call_p99_us": pct(peer, 99),
        "observe_mean_us": observe_us(uses),
        "distinct_feature_keys": len({encode(m) for m, _ in queries}),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_lifetime_predictor.json").write_text(json.dumps(result, indent=2) + "\n")
    table = (
        "| operation | online predictor | numpy per call | ratio |\n|---|---:|---:|---:|\n"
        f"| predict p50 (us) | {result['predict_p50_us']:.2f} | {result['numpy_per_call_p50_us']:.2f} "
        f"| {result['numpy_per_call_p50_us'] / result['predict_p50_us']:.1f}x faster |\n"
        f"| predict p99 (us) | {result['predict_p99_us']:.2f} | {result['numpy_per_call_p99_us']:.2f} "
        f"| {result['numpy_per_call_p99_us'] / result['predict_p99_us']:.1f}x faster |\n"
        f"| observe, mean incl. fits (us) | {result['observe_mean_us']:.2f} | - | - |\n"
    )
    (args.out / "bench_lifetime_predictor.md").write_text(table)
    print(f"{len(uses):,} block uses, {len(queries):,} predictions, {result['distinct_feature_keys']:,} feature keys\n")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
