"""Chain-of-thought acceleration on GSM8K: baseline vs early exit vs a token budget vs ESC vs self-consistency.

Each GSM8K question (the bundled 200-question test subset, in order) runs
through one loaded engine in five ways, one question at a time, so the
wall-clock is a request's time to its final answer:

* ``baseline``: greedy, up to ``--max-tokens``;
* ``early-exit``: greedy, answer probes at step boundaries (the request's
  ``cot.early_exit``), stopped when the accelerator finds the answer stable;
* ``budget``: greedy with ``cot.budget`` -- the budget asked for in the
  prompt, and a forced answer at the cap;
* ``esc``: ``--samples`` samples at ``--temperature``, ``esc_window`` in
  flight (half the samples unless ``--cot-option esc_window=K``), stopped
  when a window agrees (``cot.self_consistency``);
* ``sc``: the same number of samples, all drawn (plain self-consistency),
  majority vote -- what ESC saves samples against.

Reported per mode: accuracy (the answer read by the accelerator's
``extract_answer``, against the GSM8K ``####`` answer), mean wall-clock
per question, mean generated tokens (every sample's, cancelled ones and
tokens a probe made moot included), mean probe tokens (suffixes + what
probes decoded), mean samples drawn, and why requests stopped. The
default model (SmolLM2-135M) cannot do GSM8K: with it this is a run of the
mechanism, not of accuracy; ``--model`` takes a bigger GGUF.

Usage::

    python engines/benchmarks/bench_cot.py --limit 4 --max-tokens 128         # the mechanism, ~minutes on 2 cores
    python engines/benchmarks/bench_cot.py --model qwen2.5-1.5b-instruct-q4_0.gguf --limit 20
    python engines/benchmarks/bench_cot.py --modes baseline,early-exit --cot-option min_probe_gap=16

Writes ``results/cot.json`` and ``results/cot.md`` (``--out DIR``, ``--stem NAME``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from sagellm.core.types import SamplingParams
from sagellm.engines import LLM
from sagellm.engines.bench.environment import cpu_model_name
from sagellm.engines.bench.markdown import markdown_table
from sagellm.engines.bench.report import write_json_and_markdown
from sagellm.engines.cli.options import key_values
from sagellm.engines.data.datasets import GSM8KItem, load_gsm8k
from sagellm.engines.engine.device import dtype_name
from sagellm.engines.engine.reasoning_options import ReasoningOptions

HERE = Path(__file__).resolve().parent
MODES = ("baseline", "early-exit", "budget", "esc", "sc")
INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."


@dataclass
class ModeStats:
    """One mode's per-question measurements."""

    correct: list[bool] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    generated: list[int] = field(default_factory=list)
    probe_tokens: list[int] = field(default_factory=list)
    samples: list[int] = field(default_factory=list)
    stopped_by: Counter[str] = field(default_factory=Counter)

    def row(self) -> dict[str, Any]:
        return {
            "questions": len(self.correct),
            "accuracy": sum(self.correct) / len(self.correct) if self.correct else 0.0,
            "mean_seconds": statistics.fmean(self.seconds) if self.seconds else 0.0,
            "mean_generated_tokens": statistics.fmean(self.generated) if self.generated else 0.0,
            "mean_probe_tokens": statistics.fmean(self.probe_tokens) if self.probe_tokens else 0.0,
            "mean_samples": statistics.fmean(self.samples) if self.samples else 0.0,
            "stopped_by": dict(self.stopped_by),
        }


def messages_of(item: GSM8KItem) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"{item.question}\n{INSTRUCTION}"}]


def run_mode(llm: LLM, mode: str, items: list[GSM8KItem], args: argparse.Namespace) -> ModeStats:
    """Every question through ``mode``, one at a time."""
    cot = llm.engine.cot
    assert cot is not None
    extract = cot.accelerator.extract_answer
    greedy = SamplingParams(max_tokens=args.max_tokens, temperature=0.0)
    sampled = SamplingParams(max_tokens=args.max_tokens, temperature=args.temperature, top_p=0.95, seed=args.seed)
    options = {
        "early-exit": ReasoningOptions(early_exit=True),
        "budget": ReasoningOptions(budget=args.budget),
        "esc": ReasoningOptions(self_consistency=args.samples),
    }
    stats = ModeStats()
    for item in items:
        gold = extract(item.answer)
        started = time.perf_counter()
        if mode == "sc":
            prompt = llm.tokenizer.encode_chat(messages_of(item))
            params = [replace(sampled, seed=args.seed + i) for i in range(args.samples)]
            results = llm.generate([prompt] * args.samples, params)
            answer = cot.accelerator.vote([extract(r.text) for r in results])
            stats.generated.append(sum(len(r.token_ids) for r in results))
            stats.probe_tokens.append(0)
            stats.samples.append(args.samples)
            stats.stopped_by["samples"] += 1
        else:
            params = sampled if mode == "esc" else greedy
            result = llm.chat(messages_of(item), params, reasoning=options.get(mode))
            report = result.reasoning
            answer = report.answer if report is not None else extract(result.text)
            stats.generated.append(report.num_generated_tokens if report is not None else len(result.token_ids))
            stats.probe_tokens.append(report.num_probe_tokens if report is not None else 0)
            stats.samples.append(report.num_samples if report is not None else 1)
            stats.stopped_by[report.stopped_by if report is not None else result.finish_reason or "?"] += 1
        stats.seconds.append(time.perf_counter() - started)
        stats.correct.append(answer is not None and answer == gold)
        if args.verbose:
            print(f"  {mode:10s} gold={gold!s:>8} got={answer!s:>8} {stats.seconds[-1]:6.1f}s", flush=True)
    return stats


def markdown(report: dict[str, Any]) -> str:
    config = report["config"]
    header = ["mode", "accuracy", "s / question", "generated tokens", "probe tokens", "samples", "stopped by"]
    rows = []
    for mode, row in report["modes"].items():
        stops = ", ".join(f"{k} {v}" for k, v in sorted(row["stopped_by"].items()))
        rows.append(
            [
                mode,
                f"{row['accuracy']:.0%} ({round(row['accuracy'] * row['questions'])}/{row['questions']})",
                f"{row['mean_seconds']:.2f}",
                f"{row['mean_generated_tokens']:.1f}",
                f"{row['mean_probe_tokens']:.1f}",
                f"{row['mean_samples']:.1f}",
                stops,
            ]
        )
    env = report["environment"]
    return "\n".join(
        [
            f"# CoT acceleration on GSM8K ({config['model']}, {env['cpu']})",
            "",
            f"{config['limit']} questions, up to {config['max_tokens']} tokens, budget {config['budget']}, "
            f"{config['samples']} samples at temperature {config['temperature']}, accelerator "
            f"`{config['accelerator']}` {config['accelerator_options']}; means per question, one question at "
            f"a time. Load average {env['load_before']} before, {env['load_after']} after (other work shared "
            "the cores: wall-clock is indicative only).",
            "",
            markdown_table(header, rows, first_left=1),
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a GGUF file or HF directory (default: the embedded SmolLM2-135M)")
    parser.add_argument("--limit", type=int, default=4, help="GSM8K questions (default 4)")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--budget", type=int, default=96, help="cot.budget of the budget mode (default 96)")
    parser.add_argument("--samples", type=int, default=6, help="samples of esc and sc (default 6)")
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--accelerator", default="probe", help="cot_acceleration implementation (default probe)")
    parser.add_argument("--cot-option", action="append", default=[], metavar="KEY=VALUE", help="accelerator option")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--stem", default="cot")
    parser.add_argument("--verbose", action="store_true", help="print every question's answer")
    parser.add_argument("--quick", action="store_true", help="CI smoke: 1 question, 48 tokens, 4 samples, budget 24")
    args = parser.parse_args()
    if args.quick:
        args.limit, args.max_tokens, args.samples, args.budget = 1, 48, 4, 24
    if args.threads:
        torch.set_num_threads(args.threads)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = set(modes) - set(MODES)
    if unknown:
        parser.error(f"unknown modes {sorted(unknown)}; choose from {', '.join(MODES)}")
    accelerator_options = key_values(args.cot_option, "--cot-option") or {}
    if args.accelerator == "probe":  # ESC's window must be smaller than the samples drawn, or ESC is plain SC
        accelerator_options.setdefault("esc_window", max(2, args.samples // 2))
    model: dict[str, Any] = {"dtype": args.dtype}
    if args.model:
        model["path"] = args.model
    llm = LLM(
        model=model,
        cot_acceleration={"implementation": args.accelerator, "options": accelerator_options},
        show_progress=False,
    )
    items = load_gsm8k()[: args.limit]
    load_before = [round(x, 2) for x in os.getloadavg()]
    results: dict[str, Any] = {}
    for mode in modes:
        print(f"{mode} ...", flush=True)
        results[mode] = run_mode(llm, mode, items, args).row()
    report = {
        "schema_version": 1,
        "config": {
            "model": Path(args.model).name if args.model else "SmolLM2-135M-Instruct (embedded)",
            "limit": len(items),
            "max_tokens": args.max_tokens,
            "budget": args.budget,
            "samples": args.samples,
            "temperature": args.temperature,
            "accelerator": args.accelerator,
            "accelerator_options": accelerator_options,
            "dtype": dtype_name(llm.engine.runner.model.dtype),
            "threads": torch.get_num_threads(),
        },
        "environment": {
            "cpu": cpu_model_name(),
            "load_before": load_before,
            "load_after": [round(x, 2) for x in os.getloadavg()],
        },
        "modes": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_and_markdown(report, markdown(report), args.out, args.stem)


if __name__ == "__main__":
    main()
