"""Speculative decoding side by side: speculation off vs each proposer, at batch 1 and under load, in one run.

For each workload (input-grounded tasks, MT-Bench chat, GSM8K) and each
concurrency level (default 1, 16 and 64 sequences, closed loop, greedy, 128
new tokens at most), the same requests run through an engine with
speculation off and through one per ``--methods`` entry, interleaved, on
one loaded model (the default: bf16, 4-bit kernels). Reported per cell:

* decode tok/s and the speed-up over speculation off;
* acceptance rate (kept / verified drafts), mean tokens per verify pass
  (kept drafts + 1) and the share of steps that verified anything;
* agreement with speculation off: requests whose greedy output is
  identical (bf16 verify passes round differently from one-row decode
  steps, so this is measured, not assumed);

and per method the measured verify cost ratio ``T(K+1)/T(1)`` (a forward
pass of K+1 rows over one row, from the engine's start-up calibration) and
the cost model's predicted batch-1 speed-up
``tokens per pass / (T(K̄+1)/T(1))`` (K̄: mean drafts per verify) beside
the measured one. Targets (issue 17): grounded >= 2.0x at batch 1 with
acceptance >= 60 % and >= 2.5 tokens per pass; chat >= 1.3x; >= 0.97x at
16 and 64.

Usage::

    python engines/benchmarks/bench_spec.py                  # ~6 min on 2 cores
    python engines/benchmarks/bench_spec.py --quick          # smoke: every proposer, 1 and 4 sequences
    python engines/benchmarks/bench_spec.py --workloads grounded --levels 1
    python engines/benchmarks/bench_spec.py --methods self                         # layer-skipping self drafts
    python engines/benchmarks/bench_spec.py --bf16-target --methods draft,ngram    # bf16 target, 4-bit GGUF drafts

Writes ``results/spec.json`` and ``.md`` (``spec-<methods>[-bf16]`` for other methods; ``--out DIR``).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from sagellm.core.config import SageLLMConfig, load_config
from sagellm.core.types import SamplingParams
from sagellm.engines.bench.environment import cpu_model_name
from sagellm.engines.bench.hf_export import export_hf_dir
from sagellm.engines.bench.peak_memory import release_freed_memory
from sagellm.engines.bench.report import write_json_and_markdown
from sagellm.engines.bench.served_peers import PEER_CACHE
from sagellm.engines.bench.workloads import WORKLOADS, WorkloadOptions
from sagellm.engines.engine.builder import assemble_engine, build_engine
from sagellm.engines.engine.llm_engine import LLMEngine
from sagellm.engines.engine.step_cost import StepCostModel
from sagellm.engines.model.default_model import default_model_path
from sagellm.engines.tokenizer import Tokenizer

HERE = Path(__file__).resolve().parent
OFF = "off"


def prompts_of(workload: str, tokenizer: Tokenizer, count: int, output_len: int) -> list[list[int]]:
    """First turns of the workload's requests, rendered with the chat template."""
    spec = WORKLOADS[workload](tokenizer, WorkloadOptions(num_requests=count, output_len=output_len))
    return [
        tokenizer.encode_chat(list(r.messages)) if r.messages else list(r.prompt_token_ids)
        for r in spec.requests
        if r.follows is None
    ]


def run_closed_loop(engine: LLMEngine, prompts: list[list[int]], concurrency: int, max_tokens: int) -> dict[str, Any]:
    """All prompts, ``concurrency`` in flight at a time; tok/s over the whole run."""
    params = SamplingParams(temperature=0.0, max_tokens=max_tokens)
    outputs: dict[str, list[int]] = {}
    pending = list(enumerate(prompts))
    steps = 0
    started = time.perf_counter()
    while pending or engine.has_unfinished():
        while pending and engine.num_running + engine.num_waiting < concurrency:
            i, prompt = pending.pop(0)
            engine.add_request(prompt, params, request_id=f"p{i}")
            outputs[f"p{i}"] = []
        for out in engine.step():
            outputs[out.request_id].extend(out.new_token_ids)
        steps += 1
    seconds = time.perf_counter() - started
    tokens = [outputs[f"p{i}"] for i in range(len(prompts))]
    result: dict[str, Any] = {"tok_s": sum(map(len, tokens)) / seconds, "steps": steps, "tokens": tokens}
    spec = engine.speculator
    if spec is not None:
        result |= {
            "accept_rate": spec.accept_rate,
            "tokens_per_pass": spec.mean_accepted,
            "verify_share": spec.num_verify_steps / max(1, steps),
            "drafts_per_verify": spec.num_drafted / spec.num_verifies if spec.num_verifies else None,
        }
    return result


def engine_for(base: LLMEngine, config: SageLLMConfig, method: str, k: int, draft_model: str = "") -> LLMEngine:
    section: dict[str, Any] = {"implementation": "none" if method == OFF else method, "num_speculative_tokens": k}
    if method == "draft":
        section["options"] = {"model": draft_model}
    return assemble_engine(
        config.model_copy(update={"speculative_decoding": config.speculative_decoding.model_copy(update=section)}),
        base.runner.model,
        base.tokenizer,
    )


def cell(
    args: argparse.Namespace, base: LLMEngine, config: SageLLMConfig, prompts: list[list[int]], level: int
) -> dict[str, Any]:
    """Every method on the same prompts at one level, interleaved over ``--rounds``; medians."""
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in [OFF, *args.methods]}
    for _ in range(args.rounds):
        for method in runs:
            release_freed_memory()  # the previous run's engine and its 1 GiB KV pool (reference cycles)
            runs[method].append(
                run_closed_loop(
                    engine_for(base, config, method, args.k, args.draft_model), prompts, level, args.max_tokens
                )
            )
    off_tokens = runs[OFF][0]["tokens"]
    summary: dict[str, Any] = {}
    for method, results in runs.items():
        tok_s = statistics.median(r["tok_s"] for r in results)
        row = {key: value for key, value in results[0].items() if key not in ("tokens", "tok_s")}
        row["tok_s"] = tok_s
        row["speedup"] = tok_s / statistics.median(r["tok_s"] for r in runs[OFF])
        row["identical_requests"] = sum(a == b for a, b in zip(results[0]["tokens"], off_tokens)) / len(off_tokens)
        summary[method] = row
    return summary


def verify_costs(engine: LLMEngine, k: int) -> dict[str, float]:
    """T(n)/T(1) for n = 2..K+1 from the engine's start-up calibration of forward passes."""
    cost = engine.speculator.cost if engine.speculator is not None else StepCostModel()
    base = cost.calibrated(1)
    return {f"T({n})/T(1)": (cost.calibrated(n) or 0.0) / base for n in range(2, k + 2)} if base else {}


def predicted_speedup(row: dict[str, Any], ratios: dict[str, float]) -> float | None:
    per_pass, drafts = row.get("tokens_per_pass"), row.get("drafts_per_verify")
    if not per_pass or not drafts:
        return None
    rows = max(2, round(drafts + 1))
    ratio = ratios.get(f"T({rows})/T(1)")
    share = row["verify_share"]
    return None if not ratio else (share * per_pass + (1 - share)) / (share * ratio + (1 - share))


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Speculative decoding ({report['cpu']}, {report['threads']} threads, {report['model']}"
        + (f", draft model {report['draft_model']}" if report.get("draft_model") else "")
        + ")",
        "",
        "| workload | seqs | method | tok/s | speed-up | accept | tokens/pass | verify steps | predicted | "
        "identical to off |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for workload, levels in report["results"].items():
        for level, methods in levels.items():
            for method, row in methods.items():
                lines.append(
                    f"| {workload} | {level} | {method} | {row['tok_s']:.1f} | {row['speedup']:.2f}x | "
                    f"{_pct(row.get('accept_rate'))} | {_num(row.get('tokens_per_pass'))} | "
                    f"{_pct(row.get('verify_share'))} | {_x(row.get('predicted_speedup'))} | "
                    f"{_pct(row['identical_requests'])} |"
                )
    lines += ["", "Verify cost ratio (forward pass of K+1 rows over one row, start-up calibration):", ""]
    lines += [f"- {name}: {value:.2f}" for name, value in report["verify_cost_ratio"].items()]
    return "\n".join(lines) + "\n"


def _pct(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.0f} %"


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _x(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(default_model_path()))
    parser.add_argument(
        "--bf16-target",
        action="store_true",
        help="the target is the embedded model's weights as a bf16 Hugging Face directory (written once under "
        "~/.cache/sagellm-peers; needs transformers): what the 4-bit GGUF drafts for with method draft",
    )
    parser.add_argument(
        "--methods",
        help="proposers to compare with speculation off (comma list: ngram, self, draft; default ngram, and all "
        "three with --quick, so the smoke run starts each one)",
    )
    parser.add_argument(
        "--draft-model",
        default=str(default_model_path()),
        help="the draft model file of method draft (default: the embedded 4-bit GGUF, which drafts for the same "
        "weights in bf16 given as --model <Hugging Face dir>)",
    )
    parser.add_argument("--workloads", default="grounded,mt-bench,gsm8k")
    parser.add_argument("--levels", default="1,16,64", help="concurrent sequences")
    parser.add_argument("-k", type=int, default=4, help="--num-speculative-tokens")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="1 and 4 sequences, few requests, 48 tokens")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    args.methods = [m for m in (args.methods or ("ngram,self,draft" if args.quick else "ngram")).split(",") if m]
    levels = [1, 4] if args.quick else [int(x) for x in args.levels.split(",")]
    if args.quick:
        args.max_tokens = 48
    torch.set_num_threads(2)
    if args.bf16_target:
        args.model = str(export_hf_dir(default_model_path(), PEER_CACHE))
    config = load_config(model={"path": args.model})
    base = build_engine(config, show_progress=False)
    results: dict[str, dict[int, dict[str, Any]]] = {}
    ratios: dict[str, float] = {}
    for workload in args.workloads.split(","):
        results[workload] = {}
        for level in levels:
            count = (3 if args.quick else 6) if level == 1 else (level if args.quick else max(2 * level, 32))
            prompts = prompts_of(workload, base.tokenizer, count, args.max_tokens)
            print(f"{workload}: {len(prompts)} prompts at {level} concurrent ...", flush=True)
            results[workload][level] = cell(args, base, config, prompts, level)
            if not ratios and args.methods:
                release_freed_memory()
                ratios = verify_costs(engine_for(base, config, args.methods[0], args.k, args.draft_model), args.k)
            for method, row in results[workload][level].items():
                if method != OFF and level == 1:
                    row["predicted_speedup"] = predicted_speedup(row, ratios)
    report = {
        "cpu": cpu_model_name(),
        "threads": torch.get_num_threads(),
        "model": Path(args.model).name,
        "draft_model": Path(args.draft_model).name if "draft" in args.methods else None,
        "k": args.k,
        "max_tokens": args.max_tokens,
        "verify_cost_ratio": ratios,
        "results": results,
    }
    stem = "spec" if args.methods == ["ngram"] else "-".join(["spec", *args.methods])
    write_json_and_markdown(report, markdown(report), args.out, stem + ("-bf16" if args.bf16_target else ""))


if __name__ == "__main__":
    main()
