"""Tensor parallelism on one host: one process vs two ranks over each installed collectives backend.

    python engines/benchmarks/bench_tensor_parallel.py [--quick] [--out DIR] [--rounds N] [--backends shm,gloo]

Each configuration is an ``LLM`` over the embedded model (its default dtype):
``tp1`` (one process, every core), and ``tp2-<backend>`` (two ranks, the
cores shared out: one thread each on two cores). All stay loaded, and the
rounds interleave them, so load from neighbours lands on each alike. Per
configuration (plus ``tp2-<first backend>-pinned``: worker ranks pinned
to their own cores by the ``sysfs`` topology detector, where installed): the batch-1 decode step (TPOT: time after the first token
over the tokens after it) and output tok/s with 16 concurrent sequences;
then each step's ratio to ``tp1`` (issue 18's target: batch-1 step with
shm <= 1.15x the single process) and gloo's step over shm's. Medians over
rounds.

Writes ``tensor_parallel.json`` and ``tensor_parallel.md`` into ``--out``
(default ``engines/benchmarks/results/``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_THREADS = os.cpu_count() or 1  # one process: every core
THREADS: dict[str, int] = {}  # torch threads of rank 0 per configuration
PROMPT = "Write a long story about a lighthouse keeper who finds a message in a bottle. " * 8


@dataclass(frozen=True)
class Plan:
    prompt_tokens: int = 128
    new_tokens: int = 128
    concurrent: int = 16
    rounds: int = 3
    backends: str = "shm,gloo"

    @classmethod
    def quick(cls) -> Plan:
        return cls(prompt_tokens=32, new_tokens=16, concurrent=4, rounds=1)


def build(name: str, backend: str | None, topology: str = "none") -> Any:
    import torch

    from sagellm.engines import LLM

    torch.set_num_threads(DEFAULT_THREADS)

    sections: dict[str, Any] = {"kv_pool": {"num_blocks": 512}, "topology": {"implementation": topology}}
    if backend is not None:
        sections["collective_ops"] = {"world_size": 2, "implementation": backend}
    llm = LLM(show_progress=False, **sections)
    THREADS[name] = torch.get_num_threads()  # what build_engine chose for rank 0
    print(f"built {name} ({THREADS[name]} torch threads in rank 0)", file=sys.stderr, flush=True)
    return llm


def decode_run(llm: Any, prompt: list[int], batch: int, new_tokens: int) -> dict[str, float]:
    """Output tok/s of ``batch`` copies of ``prompt``; TPOT (ms) of the steps after the first token."""
    from sagellm.core.types import SamplingParams

    sampling = SamplingParams(temperature=0.0, max_tokens=new_tokens, ignore_eos=True)
    firsts: list[float] = []
    started = time.perf_counter()
    llm.generate([prompt] * batch, sampling, on_output=lambda out: firsts.append(time.perf_counter()))
    ended = time.perf_counter()
    first = firsts[0] if firsts else ended
    return {
        "tok_s": batch * new_tokens / (ended - started),
        "tpot_ms": 1000 * (ended - first) / max(1, new_tokens - 1),
    }


def run_round(llms: dict[str, Any], prompt: list[int], plan: Plan) -> dict[str, dict[str, float]]:
    """Each configuration in turn, with its own torch thread count (a process-wide setting rank 0 changes)."""
    import torch

    results = {}
    for name, llm in llms.items():
        torch.set_num_threads(THREADS[name])
        single = decode_run(llm, prompt, 1, plan.new_tokens)
        batched = decode_run(llm, prompt, plan.concurrent, plan.new_tokens)
        results[name] = {
            "bs1_tpot_ms": single["tpot_ms"],
            "bs1_tok_s": single["tok_s"],
            f"bs{plan.concurrent}_tok_s": batched["tok_s"],
        }
        print(f"{name}: {results[name]}", file=sys.stderr, flush=True)
    return results


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def to_markdown(report: dict[str, Any]) -> str:
    plan, table = report["plan"], report["medians"]
    cpu = report["environment"]["cpu"]
    batch_key = f"bs{plan['concurrent']}_tok_s"
    lines = [
        f"# Tensor parallelism on one host ({cpu['model']}, {cpu['cores']} cores)",
        "",
        f"{plan['prompt_tokens']}-token prompt, {plan['new_tokens']} greedy tokens, dtype {report['dtype']}; "
        f"medians of {plan['rounds']} round(s).",
        "",
        f"| configuration | batch-1 step (ms) | step / tp1 | batch-1 tok/s | {plan['concurrent']} concurrent tok/s |",
        "|---|---:|---:|---:|---:|",
    ]
    base = table["tp1"]["bs1_tpot_ms"]
    for name, row in table.items():
        ratio = row["bs1_tpot_ms"] / base
        lines.append(
            f"| {name} | {row['bs1_tpot_ms']:.2f} | {ratio:.2f}x | {row['bs1_tok_s']:.1f} | {row[batch_key]:.1f} |"
        )
    if "tp2-shm" in table and "tp2-gloo" in table:
        ratio = table["tp2-gloo"]["bs1_tpot_ms"] / table["tp2-shm"]["bs1_tpot_ms"]
        lines += ["", f"gloo / shm batch-1 step: {ratio:.2f}x."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a CI smoke run")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="output directory")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3, quick 1)")
    parser.add_argument("--backends", help="collectives backends to run two ranks over (default shm,gloo)")
    args = parser.parse_args(argv)
    plan = Plan.quick() if args.quick else Plan()
    overrides = {name: getattr(args, name) for name in asdict(plan) if getattr(args, name, None) is not None}
    plan = Plan(**{**asdict(plan), **overrides})

    from sagellm.core import registry
    from sagellm.engines.bench.environment import collect_environment

    installed = registry.available("comm_backend")
    backends = [b for b in plan.backends.split(",") if b in installed]
    if not backends:
        print(f"no backend of {plan.backends} is installed (install sagellm-collective-ops)", file=sys.stderr)
        return 2
    llms = {"tp1": build("tp1", None)} | {f"tp2-{b}": build(f"tp2-{b}", b) for b in backends}
    if "topology_detector" in registry.GROUPS and "sysfs" in registry.available("topology_detector"):
        llms[f"tp2-{backends[0]}-pinned"] = build(f"tp2-{backends[0]}-pinned", backends[0], topology="sysfs")
    tokenizer = llms["tp1"].tokenizer
    prompt = tokenizer.encode(PROMPT)[: plan.prompt_tokens]
    run_round(llms, prompt[:8], Plan.quick())  # warm-up
    runs = [run_round(llms, prompt, plan) for _ in range(plan.rounds)]
    report = {
        "plan": asdict(plan),
        "runs": runs,
        "medians": {name: medians([run[name] for run in runs]) for name in llms},
        "environment": collect_environment("cpu"),
        "dtype": str(llms["tp1"].engine.runner.model.dtype).replace("torch.", ""),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tensor_parallel.json").write_text(json.dumps(report, indent=2))
    markdown = to_markdown(report)
    (args.out / "tensor_parallel.md").write_text(markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
