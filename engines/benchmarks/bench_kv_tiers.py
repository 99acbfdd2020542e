"""KV tiers under preemption: ``device`` vs ``device,host``, side by side on a scaled-down Mooncake replay.

    python engines/benchmarks/bench_kv_tiers.py [--quick] [--out DIR] [--rounds N] [--threads N]

One process loads the embedded model once (default dtype: bf16 on CPUs with
native bf16) and, each round, builds a fresh engine per configuration
around it: the same small device pool, the same requests from the Mooncake
trace (lengths scaled down, shared prefixes kept), all submitted at once.
The pool holds the largest request but about a fifth of the burst, so the
FIFO scheduler admits until blocks run out and then preempts as chunked
prefills and decodes grow. ``device`` preempts by recompute and drops
evicted prefix blocks; ``device,host`` lets the scheduler swap by cost
(almost always swap on a CPU) and demotes evicted prefix blocks to a host
tier large enough for all of them. Within a round the two engines step in
lockstep (one step each, in turn) and each is timed by its own steps, so
load from neighbours on a shared machine lands on both alike; tables report
medians over rounds.

Writes ``kv_tiers.json`` and ``kv_tiers.md`` into ``--out`` (default
``engines/benchmarks/results/``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CONFIGS = {"device": {}, "device,host": {"tiers": "device,host"}}
BLOCK_SIZE = 16


@dataclass(frozen=True)
class Plan:
    num_requests: int = 32
    length_scale: float = 0.01  # Mooncake prompts of ~14k tokens become ~140 (hash blocks of 6 tokens)
    output_len: int = 96  # the trace's outputs scale to a token or two; decodes must grow for preemption to bite
    pool_share: float = 0.2  # device pool = this share of the burst's blocks (at least the largest request)
    rounds: int = 3
    threads: int = 2

    @classmethod
    def quick(cls) -> Plan:
        return cls(num_requests=10, length_scale=0.008, output_len=40, rounds=1)


@dataclass(frozen=True)
class Request:
    prompt: list[int]
    max_tokens: int


def build_requests(tokenizer: Any, plan: Plan) -> list[Request]:
    from sagellm.engines.bench.workloads.base import WorkloadOptions
    from sagellm.engines.bench.workloads.mooncake import build

    spec = build(tokenizer, WorkloadOptions(num_requests=plan.num_requests, length_scale=plan.length_scale))
    return [Request(list(r.prompt_token_ids), plan.output_len) for r in spec.requests]


def pool_blocks(requests: list[Request], plan: Plan) -> int:
    blocks = [-(-(len(r.prompt) + r.max_tokens) // BLOCK_SIZE) for r in requests]
    return max(max(blocks) + 4, int(sum(blocks) * plan.pool_share))


def build_engine(llm: Any, tiers: dict[str, Any], num_blocks: int) -> Any:
    from sagellm.core.config import load_config
    from sagellm.engines.engine.builder import assemble_engine

    kv_pool = {"num_blocks": num_blocks, "block_size": BLOCK_SIZE, **tiers}
    if "host" in tiers.get("tiers", ""):
        kv_pool["host_num_blocks"] = 4 * num_blocks  # room for every swapped and demoted block of the burst
    return assemble_engine(load_config(kv_pool=kv_pool), llm.engine.runner.model, llm.tokenizer)


def run_round(llm: Any, requests: list[Request], num_blocks: int) -> dict[str, dict[str, Any]]:
    """Every configuration gets the whole burst at once; their engines then step in lockstep, one step each in turn.

    Each engine keeps its own clock: the time spent inside its own
    ``step()`` calls. Latencies and throughput are read off that clock, so
    a neighbour's load spike (on this 2-core machine, a spike can slow
    every kernel several-fold for seconds) costs both configurations alike
    instead of whichever happened to run at the time.
    """
    from sagellm.core.types import SamplingParams

    engines = {name: build_engine(llm, tiers, num_blocks) for name, tiers in CONFIGS.items()}
    clocks = dict.fromkeys(engines, 0.0)
    first: dict[str, dict[str, float]] = {name: {} for name in engines}
    outputs = dict.fromkeys(engines, 0)
    for engine in engines.values():
        for i, request in enumerate(requests):
            params = SamplingParams(max_tokens=request.max_tokens, temperature=0.0, ignore_eos=True)
            engine.add_request(request.prompt, params, request_id=f"r{i}")
    while any(engine.has_unfinished() for engine in engines.values()):
        for name, engine in engines.items():
            if not engine.has_unfinished():
                continue
            started = time.perf_counter()
            outs = engine.step()
            clocks[name] += time.perf_counter() - started
            for out in outs:
                first[name].setdefault(out.request_id, clocks[name])
                outputs[name] += len(out.new_token_ids)
    return {name: summarize(engine, clocks[name], first[name], outputs[name]) for name, engine in engines.items()}


def summarize(engine: Any, clock: float, first: dict[str, float], num_output: int) -> dict[str, Any]:
    ttft_ms = sorted(t * 1000 for t in first.values())
    metric = engine.metrics.counter
    return {
        "engine_s": clock,
        "output_tok_s": num_output / clock,
        "ttft_p50_ms": percentile(ttft_ms, 50),
        "ttft_p99_ms": percentile(ttft_ms, 99),
        "computed_tokens": metric("generation_tokens_total").value,
        "preemptions": metric("preemptions_total").value,
        "swap_out": metric("swap_out_total").value,
        "swap_in": metric("swap_in_total").value,
        "swap_out_blocks": metric("swap_out_blocks_total").value,
        "swap_fallbacks": metric("swap_fallback_total").value,
        "demoted_blocks": metric("kv_demoted_blocks_total").value,
        "promoted_blocks": metric("kv_promoted_blocks_total").value,
        "prefix_hit_rate": engine.kv.hit_rate(),
        "migrations": metric("kv_migrations_total").value,
        "migration_wait_s": metric("kv_migration_wait_seconds_total").value,
        "migration_gb_s": {
            f"{m.src_tier.value}->{m.dst_tier.value}": round(m.gb_per_s, 2) for m in engine.kv.pool.stats().migrations
        },
    }


def percentile(sorted_values: list[float], p: float) -> float:
    """Linear interpolation between samples (numpy's default)."""
    if not sorted_values:
        return float("nan")
    rank = (len(sorted_values) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)


ROWS = (
    ("output tok/s", "output_tok_s", "{:.1f}"),
    ("engine seconds (own steps)", "engine_s", "{:.1f}"),
    ("TTFT p50 ms", "ttft_p50_ms", "{:,.0f}"),
    ("TTFT p99 ms", "ttft_p99_ms", "{:,.0f}"),
    ("tokens computed (prompt + recompute + output)", "computed_tokens", "{:,.0f}"),
    ("preemptions", "preemptions", "{:.0f}"),
    ("swapped out / in (sequences)", ("swap_out", "swap_in"), "{:.0f} / {:.0f}"),
    ("blocks swapped out", "swap_out_blocks", "{:.0f}"),
    ("prefix blocks demoted / promoted", ("demoted_blocks", "promoted_blocks"), "{:.0f} / {:.0f}"),
    ("prefix hit rate", "prefix_hit_rate", "{:.3f}"),
    ("migrations / seconds waited for them", ("migrations", "migration_wait_s"), "{:.0f} / {:.2f}"),
)


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    numeric = {k for k, v in runs[0].items() if isinstance(v, (int, float))}
    merged = {k: statistics.median(r[k] for r in runs) for k in numeric}
    return merged | {"migration_gb_s": runs[-1]["migration_gb_s"]}


def markdown(report: dict[str, Any]) -> str:
    medians = report["medians"]
    names = list(medians)
    lines = [
        f"| metric | {' | '.join(f'`{n}`' for n in names)} |",
        "|---|" + "---:|" * len(names),
    ]
    for label, key, fmt in ROWS:
        cells = []
        for name in names:
            values = [medians[name][k] for k in key] if isinstance(key, tuple) else [medians[name][key]]
            cells.append(fmt.format(*values))
        lines.append(f"| {label} | {' | '.join(cells)} |")
    base, tiered = medians["device"], medians["device,host"]
    lines.append(
        f"\n`device,host` / `device`: throughput {tiered['output_tok_s'] / base['output_tok_s']:.2f}x, "
        f"TTFT p99 {tiered['ttft_p99_ms'] / base['ttft_p99_ms']:.2f}x, "
        f"tokens computed {tiered['computed_tokens'] / base['computed_tokens']:.2f}x "
        f"(medians of {report['plan']['rounds']} round(s); migration GB/s: {tiered['migration_gb_s']})."
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a CI smoke run (well under a minute)")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="output directory")
    parser.add_argument("--rounds", type=int, help="rounds of both configurations (default 3, quick 1)")
    parser.add_argument("--threads", type=int, help="torch threads (default 2)")
    parser.add_argument("--num-requests", type=int, help="requests from the trace (default 32, quick 10)")
    parser.add_argument("--length-scale", type=float, help="prompt length scale (default 0.01, quick 0.008)")
    parser.add_argument("--output-len", type=int, help="new tokens per request (default 96, quick 40)")
    parser.add_argument("--pool-share", type=float, help="device pool / blocks of the whole burst (default 0.2)")
    args = parser.parse_args(argv)
    plan = Plan.quick() if args.quick else Plan()
    overrides = {name: getattr(args, name) for name in asdict(plan) if getattr(args, name, None) is not None}
    plan = Plan(**{**asdict(plan), **overrides})

    import torch

    from sagellm.engines import LLM
    from sagellm.engines.bench.environment import collect_environment

    torch.set_num_threads(plan.threads)
    llm = LLM(show_progress=False)
    requests = build_requests(llm.tokenizer, plan)
    num_blocks = pool_blocks(requests, plan)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in CONFIGS}
    warm = [Request(requests[0].prompt[:64], 4), Request(requests[1].prompt[:8], 4)]
    run_round(llm, warm, num_blocks)  # warm-up: prefill and decode kernels, the allocator
    for round_no in range(plan.rounds):
        for name, result in run_round(llm, requests, num_blocks).items():
            runs[name].append(result)
            print(f"round {round_no + 1} {name}: {result['engine_s']:.1f} s", file=sys.stderr, flush=True)
    report = {
        "plan": asdict(plan),
        "workload": {
            "trace": "mooncake",
            "num_requests": len(requests),
            "mean_prompt_tokens": statistics.mean(len(r.prompt) for r in requests),
            "max_prompt_tokens": max(len(r.prompt) for r in requests),
            "device_pool_blocks": num_blocks,
            "block_size": BLOCK_SIZE,
        },
        "runs": runs,
        "medians": {name: median_run(results) for name, results in runs.items()},
        "environment": collect_environment(str(llm.engine.runner.device)),
        "dtype": str(llm.engine.runner.model.dtype).replace("torch.", ""),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "kv_tiers.json").write_text(json.dumps(report, indent=2))
    table = markdown(report)
    (args.out / "kv_tiers.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
