"""``sagellm-eviction-sim``: replay a block-hash trace through every policy at several cache sizes.

    python -m sagellm.eviction_policy.sim --trace mooncake_trace.jsonl
    python -m sagellm.eviction_policy.sim --trace t.jsonl --cache-sizes 1% 5% 2000 --policies lru,s3fifo \\
        --option s3fifo.ghost_ratio=3 --json out.json

Exit status 0 on success, 2 on bad input (unreadable or malformed trace,
unknown policy, bad size or option) with one ``error: ...`` line on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sagellm.core.errors import ConfigError, SageLLMError
from sagellm.core.protocols import LifetimePredictor
from sagellm.eviction_policy.registry import POLICIES
from sagellm.eviction_policy.sim.sweep import default_sizes, parse_sizes, policy_factories, run_sweep
from sagellm.eviction_policy.sim.trace import Trace, load_trace


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sagellm-eviction-sim",
        description="Block hit ratio of eviction policies on a hash_ids trace (Mooncake jsonl), Belady alongside.",
    )
    parser.add_argument("--trace", required=True, type=Path, help="jsonl: one {timestamp, hash_ids, ...} per line")
    parser.add_argument(
        "--cache-sizes",
        nargs="+",
        default=None,
        metavar="SIZE",
        help="blocks ('2000') or shares of the trace's unique blocks ('5%%'); default 1,2,5,10,20,40 %%",
    )
    parser.add_argument(
        "--policies", default=",".join(POLICIES), help=f"comma list (default: all: {','.join(POLICIES)})"
    )
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="POLICY.KEY=VALUE",
        help="constructor option, VALUE as JSON (e.g. s3fifo.ghost_ratio=3); repeatable",
    )
    parser.add_argument(
        "--predictor", default=None, help="learned policy: LifetimePredictor implementation from core's registry"
    )
    parser.add_argument("--depth-cost", type=float, default=0.02, help="recompute cost per block of prefix depth")
    parser.add_argument("--limit", type=int, default=None, help="replay only the first N requests")
    parser.add_argument("--json", type=Path, default=None, help="write the full results here")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        trace = _limited(load_trace(args.trace), args.limit)
        sizes = parse_sizes(args.cache_sizes, trace.unique_blocks()) if args.cache_sizes else None
        names = [n.strip() for n in args.policies.split(",") if n.strip()]
        factories = policy_factories(names, parse_options(args.option), _predictor(args.predictor))
        sweep = run_sweep(
            trace, sizes or default_sizes(trace.unique_blocks()), factories, args.depth_cost, not args.no_progress
        )
        if args.json is not None:
            _write(args.json, json.dumps(sweep.to_json(), indent=2))
    except SageLLMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"{sweep.trace}: {sweep.num_requests:,} requests, {sweep.accesses:,} block lookups, "
        f"{sweep.unique_blocks:,} unique blocks (infinite cache: {100 * sweep.compulsory_hit_ratio:.2f} % hits)\n"
    )
    print(sweep.markdown())
    return 0


def parse_options(specs: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``["s3fifo.ghost_ratio=3"]`` -> ``{"s3fifo": {"ghost_ratio": 3}}``; values are JSON, else strings."""
    options: dict[str, dict[str, Any]] = {}
    for spec in specs:
        target, eq, raw = spec.partition("=")
        policy, dot, key = target.partition(".")
        if not (eq and dot and policy and key):
            raise ConfigError(f"--option '{spec}': expected POLICY.KEY=VALUE")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        options.setdefault(policy, {})[key] = value
    return options


def _predictor(name: str | None) -> Callable[[], LifetimePredictor] | None:
    """A factory building the named predictor through core's registry (never by importing its package)."""
    if name is None:
        return None
    from sagellm.core.config import LifetimePredictorSection
    from sagellm.core.registry import create_lifetime_predictor

    section = LifetimePredictorSection(implementation=name)
    create_lifetime_predictor(section)  # an unknown name fails before any replay
    return lambda: create_lifetime_predictor(section)


def _limited(trace: Trace, limit: int | None) -> Trace:
    if limit is None:
        return trace
    if limit < 1:
        raise ConfigError(f"--limit must be >= 1, got {limit}")
    return Trace(requests=trace.requests[:limit], name=trace.name)


def _write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None


if __name__ == "__main__":
    raise SystemExit(main())
