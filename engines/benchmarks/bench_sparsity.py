"""Sparsity (``--sparsity``): what pruning costs in perplexity, and what the 2:4 kernels give back in decode speed.

Two tables for the default model (SmolLM2-135M), through the engine's own
code (``engine/sparsify.py``: block-by-block sequential calibration on
GSM8K solutions and MT-Bench questions, never the scored text):

* **quality** -- perplexity (``runtime.perplexity``: each 256-token window
  from scratch, in chunks of 256 through the paged-KV path) on
  tinyshakespeare (first 4,096 tokens) and GSM8K test (first 60 items,
  3,072 tokens), as in direction_3_acceleration/quantization/README.md, for
  the dense model and every method x pattern; relative increase over
  dense, the share of zeros reached and the seconds pruning took. Rows of
  256 run every linear through a dense matmul on the pruned weights, so
  this measures the pruning, not a kernel.
* **decode** -- batch-1 and 8-row greedy decode tok/s next to perplexity on
  the next 1,024 tinyshakespeare tokens fed in chunks of 8 (so every row
  runs the few-row kernels decode uses: 4-bit, packed 2:4 int8 / bf16) for
  the dense model (default 4-bit path; ``low_bit_matmul`` off; float32)
  and wanda 2:4 run through each kernel (``kernel=int8 | bf16 | dense``).
  The 2:4 rows reuse the quality stage's wanda 2:4 weights (pruned once,
  at the quality dtype), cast to the decode dtype and re-wrapped per kernel.
  Models are interleaved round by round so machine load hits them alike.

Usage::

    python engines/benchmarks/bench_sparsity.py                  # full (see engines/README for time)
    python engines/benchmarks/bench_sparsity.py --quick          # smoke: magnitude + wanda 2:4, short texts
    python engines/benchmarks/bench_sparsity.py --methods wanda,sparsegpt --patterns 2:4 --only quality

Writes ``results/sparsity.json`` and ``results/sparsity.md`` (or ``--out DIR``).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from sagellm.core import registry
from sagellm.core.config import load_config
from sagellm.core.types import SamplingParams
from sagellm.engines import LLM, LLMEngine
from sagellm.engines.bench.environment import cpu_model_name
from sagellm.engines.data.datasets import load_gsm8k
from sagellm.engines.engine.builder import DTYPE_NAMES, assemble_engine
from sagellm.engines.engine.device import resolve_dtype
from sagellm.engines.engine.sparsify import (
    CALIBRATION_TOKENS,
    decoder_blocks,
    sparsify_model,
    sparsity_calibration_ids,
    zero_share,
)
from sagellm.engines.model.llama import LlamaForCausalLM
from sagellm.engines.runtime.perplexity import perplexity

HERE = Path(__file__).resolve().parent
TEXT = HERE / "data" / "tinyshakespeare_head.txt"
# method label -> (registry name, options): the five rows the quality table compares
METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "magnitude": ("magnitude", {}),
    "wanda": ("wanda", {}),
    "sparsegpt": ("sparsegpt", {}),
    "wanda+update": ("wanda", {"update": True}),
    "wanda+owl": ("wanda", {"owl_lambda": 0.08}),  # OWL's lambda for LLaMA (Yin et al., 2024); M = 5
}
UNSTRUCTURED_ONLY = {"wanda+owl"}
KERNELS = ("int8", "bf16", "dense")


@dataclass(frozen=True)
class Plan:
    methods: tuple[str, ...] = tuple(METHODS)
    patterns: tuple[str, ...] = ("unstructured", "4:8", "2:4")
    quality_dtype: str = "auto"
    decode_dtype: str = "bfloat16"
    calibration_tokens: int = CALIBRATION_TOKENS
    shakespeare_tokens: int = 4096
    gsm8k_items: int = 60
    gsm8k_tokens: int = 3072
    window: int = 256
    decode_text_tokens: int = 1024  # tinyshakespeare after the first shakespeare_tokens
    decode_chunk: int = 8
    prompt_len: int = 64
    new_tokens: int = 48
    batches: tuple[int, ...] = (1, 8)
    rounds: int = 3
    threads: int = 2
    sections: tuple[str, ...] = field(default=("quality", "decode"))

    @classmethod
    def quick(cls) -> Plan:
        return cls(
            methods=("magnitude", "wanda"),
            patterns=("2:4",),
            calibration_tokens=256,
            shakespeare_tokens=512,
            gsm8k_tokens=256,
            decode_text_tokens=64,
            prompt_len=16,
            new_tokens=8,
            rounds=1,
        )


# ---------------------------------------------------------------------------- models
def load(dtype: str, low_bit: bool, threads: int) -> LLM:
    model = {"dtype": dtype, "device": "cpu", "num_threads": threads, "low_bit_matmul": low_bit}
    return LLM(model=model, kv_pool={"num_blocks": 16}, show_progress=False)


def sparsifier_for(method: str, pattern: str, kernel: str = "dense") -> Any:
    name, options = METHODS[method]
    section = {"implementation": name, "options": {**options, "pattern": pattern, "kernel": kernel}}
    return registry.create_sparsifier(load_config(sparsity=section))


def engine_for(llm: LLM, model: LlamaForCausalLM, num_blocks: int) -> LLMEngine:
    config = load_config(model={"dtype": DTYPE_NAMES[model.dtype], "device": "cpu"}, kv_pool={"num_blocks": num_blocks})
    return assemble_engine(config, model, llm.tokenizer)


# ---------------------------------------------------------------------------- quality
def quality(plan: Plan, base: LLM, texts: dict[str, list[int]]) -> tuple[dict[str, Any], LlamaForCausalLM | None]:
    """One row per method x pattern (and dense); also returns the wanda 2:4 model for the decode stage."""
    calibration = sparsity_calibration_ids(base.tokenizer, plan.calibration_tokens)
    dense = base.engine.runner.model
    rows: dict[str, Any] = {"dense": score(plan, dense, texts)}
    progress("dense", rows["dense"])
    kept = None
    for method in plan.methods:
        for pattern in plan.patterns:
            if method in UNSTRUCTURED_ONLY and pattern != "unstructured":
                continue
            model = copy.deepcopy(dense)
            sparsifier = sparsifier_for(method, pattern)
            started = time.perf_counter()
            sparsify_model(model, sparsifier, calibration)
            seconds = time.perf_counter() - started
            linears = [linear for block in decoder_blocks(model) for linear in block]
            row = {"prune_seconds": seconds, "zero_share": zero_share(sparsifier, linears), **score(plan, model, texts)}
            rows[f"{method} {pattern}"] = row
            progress(f"{method} {pattern}", row)
            if method == "wanda" and pattern == "2:4":
                kept = model
    return rows, kept


def score(plan: Plan, model: LlamaForCausalLM, texts: dict[str, list[int]]) -> dict[str, float]:
    return {name: perplexity(model, ids, window=plan.window, chunk_size=plan.window) for name, ids in texts.items()}


# ---------------------------------------------------------------------------- decode
def decode_models(plan: Plan, pruned: LlamaForCausalLM | None) -> dict[str, tuple[LLM, LlamaForCausalLM]]:
    """The dense rows, then wanda 2:4 through each kernel (weights from the quality stage, in the decode dtype)."""
    dtype = plan.decode_dtype
    default = load(dtype, True, plan.threads)
    rows = {f"dense {dtype}, default path": (default, default.engine.runner.model)}
    if dtype != "float32":
        plain = load(dtype, False, plan.threads)
        rows[f"dense {dtype}, low_bit_matmul off"] = (plain, plain.engine.runner.model)
        fp32 = load("float32", True, plan.threads)
        rows["dense float32"] = (fp32, fp32.engine.runner.model)
    if pruned is None:
        return rows
    weights = [linear.sparsifier.densify(linear.sparse) for block in decoder_blocks(pruned) for linear in block]
    for kernel in KERNELS:
        model = copy.deepcopy(default.engine.runner.model)
        rewrap = sparsifier_for("magnitude", "2:4", kernel)  # the kept 2:4 entries are each group's largest
        for linear, weight in zip([lin for block in decoder_blocks(model) for lin in block], weights):
            linear.use_sparse(rewrap.sparsify(weight.to(model.dtype)), rewrap)
        rows[f"wanda 2:4 {dtype}, kernel={kernel}"] = (default, model)
    return rows


def decode(plan: Plan, models: dict[str, tuple[LLM, LlamaForCausalLM]], ids: list[int]) -> dict[str, Any]:
    start = plan.shakespeare_tokens
    text = ids[start : start + plan.decode_text_tokens]
    report: dict[str, Any] = {}
    for label, (_, model) in models.items():
        report[label] = {"decode_perplexity": perplexity(model, text, window=plan.window, chunk_size=plan.decode_chunk)}
        progress(label, report[label])
    blocks = max(plan.batches) * -(-(plan.prompt_len + plan.new_tokens) // 16) + 8
    engines = {label: engine_for(llm, model, blocks) for label, (llm, model) in models.items()}
    for engine in engines.values():
        decode_run(engine, [ids[:16]], 4)  # warm-up: first-use costs (oneDNN primitives, fresh pages)
    for batch in plan.batches:
        prompts = [ids[i * plan.prompt_len : (i + 1) * plan.prompt_len] for i in range(batch)]
        speeds: dict[str, list[float]] = {label: [] for label in engines}
        for _ in range(plan.rounds):
            for label, engine in engines.items():
                speeds[label].append(decode_run(engine, prompts, plan.new_tokens))
        for label, runs in speeds.items():
            report[label][f"batch_{batch}_tok_s"] = statistics.median(runs)
            report[label][f"batch_{batch}_runs"] = runs
    return report


def decode_run(engine: LLMEngine, prompts: list[list[int]], new_tokens: int) -> float:
    """Decode tok/s: tokens after each request's first, over the time after the first token came out."""
    greedy = SamplingParams(max_tokens=new_tokens, temperature=0.0, ignore_eos=True)
    for prompt in prompts:
        engine.add_request(prompt, greedy)
    produced, first = 0, None
    while engine.has_unfinished():
        for out in engine.step():
            first = first or time.perf_counter()
            produced += len(out.new_token_ids)
    elapsed = time.perf_counter() - (first or time.perf_counter())
    return (produced - len(prompts)) / elapsed if elapsed > 0 else 0.0


# ---------------------------------------------------------------------------- report
def quality_table(report: dict[str, Any]) -> str:
    plan, rows = report["plan"], report["quality"]
    dense = rows["dense"]
    texts = [name for name in dense]
    lines = [
        f"Perplexity, compute {report['quality_dtype']}: {', '.join(report['texts'][t] for t in texts)}; "
        f"each window of {plan['window']} from scratch, chunks of {plan['window']}; calibration "
        f"{plan['calibration_tokens']} tokens (GSM8K solutions from item 60 on + MT-Bench), sequential.",
        "",
        "| method | pattern | zeros | " + " | ".join(f"{t} | vs dense" for t in texts) + " | prune s |",
        "|---|---|---:|" + "---:|---:|" * len(texts) + "---:|",
        "| dense | - | 0 % | " + " | ".join(f"{dense[t]:.3f} | -" for t in texts) + " | - |",
    ]
    for label, row in rows.items():
        if label == "dense":
            continue
        method, pattern = label.rsplit(" ", 1)
        cells = " | ".join(f"{row[t]:.3f} | {100 * (row[t] / dense[t] - 1):+.1f} %" for t in texts)
        lines.append(
            f"| {method} | {pattern} | {100 * row['zero_share']:.1f} % | {cells} | {row['prune_seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def decode_table(report: dict[str, Any]) -> str:
    plan, rows = report["plan"], report["decode"]
    reference = next(iter(rows.values()))["decode_perplexity"]
    batches = [f"batch_{b}_tok_s" for b in plan["batches"]]
    lines = [
        f"Decode: {plan['prompt_len']}-token prompts, {plan['new_tokens']} greedy tokens, median of {plan['rounds']} "
        f"interleaved rounds; perplexity on tinyshakespeare tokens {plan['shakespeare_tokens']:,}-"
        f"{plan['shakespeare_tokens'] + plan['decode_text_tokens']:,} in chunks of {plan['decode_chunk']} "
        "(the few-row kernels decode runs), vs the first row.",
        "",
        "| model | "
        + " | ".join(f"{b.split('_')[0]} {b.split('_')[1]} decode tok/s" for b in batches)
        + " | perplexity (chunks of 8) | vs first row |",
        "|---|" + "---:|" * len(batches) + "---:|---:|",
    ]
    for label, row in rows.items():
        ppl = row["decode_perplexity"]
        speeds = " | ".join(f"{row[b]:.1f}" for b in batches)
        lines.append(f"| {label} | {speeds} | {ppl:.3f} | {100 * (ppl / reference - 1):+.1f} % |")
    return "\n".join(lines) + "\n"


def environment(threads: int) -> dict[str, Any]:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE)
        commit = head.stdout.strip()
    except OSError:
        commit = ""
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_model_name(),
        "cpus": os.cpu_count(),
        "threads": threads,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "commit": commit,
        "load_average_before": os.getloadavg(),
    }


def progress(label: str, row: dict[str, Any]) -> None:
    cells = ", ".join(f"{k} {v:.3f}" for k, v in row.items() if isinstance(v, float))
    print(f"  {label}: {cells}", file=sys.stderr, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    parser.add_argument("--methods", help=f"comma-separated, of {', '.join(METHODS)} (default: all)")
    parser.add_argument("--patterns", help="comma-separated, of unstructured, 4:8, 2:4 (default: all)")
    parser.add_argument("--only", choices=["quality", "decode"], help="one section (decode still prunes wanda 2:4)")
    parser.add_argument("--quality-dtype", help="compute dtype of the quality table (default auto: the engine's)")
    parser.add_argument("--decode-dtype", help="compute dtype of the decode table (default bfloat16)")
    parser.add_argument("--calibration-tokens", type=int, help=f"default {CALIBRATION_TOKENS} (the engine's)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--out", default=str(HERE / "results"), help="output directory")
    args = parser.parse_args()
    plan = Plan.quick() if args.quick else Plan()
    updates: dict[str, Any] = {"threads": args.threads}
    if args.methods:
        updates["methods"] = tuple(m.strip() for m in args.methods.split(","))
        if unknown := set(updates["methods"]) - set(METHODS):
            parser.error(f"unknown method(s) {sorted(unknown)}; choose from {', '.join(METHODS)}")
    if args.patterns:
        updates["patterns"] = tuple(p.strip() for p in args.patterns.split(","))
    for key in ("quality_dtype", "decode_dtype", "calibration_tokens"):
        if getattr(args, key) is not None:
            updates[key] = getattr(args, key)
    if args.only:
        updates["sections"] = (args.only,)
    plan = replace(plan, **updates)
    torch.set_num_threads(plan.threads)
    quality_dtype = DTYPE_NAMES[resolve_dtype(plan.quality_dtype, torch.device("cpu"))]
    report: dict[str, Any] = {
        "plan": asdict(plan),
        "quality_dtype": quality_dtype,
        "environment": environment(plan.threads),
    }
    started = time.perf_counter()
    base = load(quality_dtype, True, plan.threads)
    ids = base.tokenizer.encode(TEXT.read_text())
    gsm8k = "\n\n".join(f"{item.question}\n{item.answer}" for item in load_gsm8k()[: plan.gsm8k_items])
    texts = {
        "tinyshakespeare": ids[: plan.shakespeare_tokens],
        "gsm8k": base.tokenizer.encode(gsm8k)[: plan.gsm8k_tokens],
    }
    report["texts"] = {
        "tinyshakespeare": f"tinyshakespeare ({len(texts['tinyshakespeare']):,} tokens)",
        "gsm8k": f"GSM8K test first {plan.gsm8k_items} ({len(texts['gsm8k']):,} tokens)",
    }
    print(f"quality, compute {quality_dtype} ...", file=sys.stderr, flush=True)
    quality_plan = plan if "quality" in plan.sections else replace(plan, methods=("wanda",), patterns=("2:4",))
    report["quality"], pruned = quality(quality_plan, base, texts)
    if "decode" in plan.sections:
        print(f"decode, compute {plan.decode_dtype} ...", file=sys.stderr, flush=True)
        report["decode"] = decode(plan, decode_models(plan, pruned), ids)
    report["seconds"] = time.perf_counter() - started
    report["environment"]["load_average_after"] = os.getloadavg()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sparsity.json").write_text(json.dumps(report, indent=2))
    tables = [quality_table(report)] + ([decode_table(report)] if "decode" in report else [])
    (out / "sparsity.md").write_text("\n".join(tables))
    print("\n".join(tables))
    return 0


if __name__ == "__main__":
    sys.exit(main())
