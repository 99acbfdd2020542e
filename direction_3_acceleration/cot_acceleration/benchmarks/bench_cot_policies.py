"""Mechanism figures for the CoT policies on synthetic traces: no model runs, nothing here is an accuracy.

    python benchmarks/bench_cot_policies.py [--quick] [--out DIR] [--seed N]

Early exit: random reasoning traces (8-24 steps of 15-60 tokens) whose
probe answers follow an *answer-stability profile* (when the answer
settles, how sure the probes are) are replayed through the ``probe``
accelerator (``sagellm.cot_acceleration.replay``: the engine's loop, a
word per token). It reports the reasoning tokens early exit leaves
undecoded, the probes it forks and their decode cost (an upper bound:
``max_probe_tokens`` per probe), and how often the answer it stops on is
the trace's final one. ESC: questions whose sampled answers hit the
majority answer with probability ``p`` are drawn in windows of 5 up to 40
samples (ESC's GSM8K setting); it reports the samples drawn and how often
ESC's answer equals the vote over all 40.

The profiles are made up to show the mechanism; what a real model saves
depends on how its answers actually settle, which only a model run shows.
Also measured: the accelerator's own cost per engine step (``should_probe``
on a long reasoning text), which does depend on this machine.

Writes ``bench_cot_policies.json`` and ``bench_cot_policies.md`` into
``--out`` (default ``benchmarks/results/``, git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sagellm.core.types import AnswerProbe, ReasoningProgress
from sagellm.cot_acceleration import (
    AnswerProbeAccelerator,
    ScriptedStep,
    consistent,
    majority_vote,
    replay,
    samples_until_consistent,
)

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
ESC_WINDOW, ESC_MAX_SAMPLES = 5, 40  # ESC's GSM8K setting (Li et al. 2024, early_stop_gsm8k.py)
SHORT_PROBE_TOKENS = 4  # a probe stopped at "}": a few digits of a GSM8K answer and the brace
SETTINGS: dict[str, dict[str, Any]] = {
    "default (2 stable, conf 0.8)": {},
    "Dynasor-like (3 stable, any conf)": {"stable_probes": 3, "confidence": 0.0},
    "DEER-like (1 probe, conf 0.95)": {"stable_probes": 1, "confidence": 0.95},
}


@dataclass(frozen=True)
class Profile:
    """How a synthetic trace's probe answers behave.

    Before step ``settle * num_steps`` probes read a wrong answer (or
    nothing, 30 %) at confidence 0.2-0.7; from there the final answer at
    confidence ``sure``. ``decoy``: a wrong answer read confidently for two
    steps at 40 % of the trace (a premature agreement). ``settle`` None:
    the answer never settles (a new one every step).
    """

    name: str
    settle: float | None
    sure: tuple[float, float]
    decoy: bool = False


PROFILES = [
    Profile("settles at 30 %, sure", 0.3, (0.85, 1.0)),
    Profile("settles at 80 %, sure", 0.8, (0.85, 1.0)),
    Profile("settles at 50 %, unsure", 0.5, (0.5, 0.9)),
    Profile("wrong answer held at 40 %, settles at 70 %", 0.7, (0.85, 1.0), decoy=True),
    Profile("never settles", None, (0.85, 1.0)),
]
ESC_PROFILES = [0.95, 0.8, 0.6, 0.4]  # probability that one sample reads the majority answer


def make_trace(profile: Profile, rng: random.Random) -> list[ScriptedStep]:
    num_steps = rng.randint(8, 24)
    settle_at = None if profile.settle is None else round(profile.settle * num_steps)
    steps = []
    for index in range(num_steps):
        words = " ".join(f"t{index}_{w}" for w in range(rng.randint(15, 60)))
        answer: str | None
        if settle_at is not None and index >= settle_at:
            answer, confidence = "42", rng.uniform(*profile.sure)
        elif profile.decoy and settle_at is not None and index in (round(0.4 * num_steps), round(0.4 * num_steps) + 1):
            answer, confidence = "41", rng.uniform(*profile.sure)
        elif settle_at is None:
            answer, confidence = str(100 + index), rng.uniform(*profile.sure)
        else:
            answer = None if rng.random() < 0.3 else str(rng.randint(0, 40))
            confidence = rng.uniform(0.2, 0.7)
        steps.append(ScriptedStep(words, answer, confidence))
    return steps


def early_exit_row(profile: Profile, setting: str, traces: list[list[ScriptedStep]]) -> dict[str, Any]:
    accelerator = AnswerProbeAccelerator(**SETTINGS[setting])
    outcomes = [replay(accelerator, steps) for steps in traces]
    total = sum(o.total_tokens for o in outcomes)
    reasoning = sum(o.reasoning_tokens for o in outcomes)
    num_probes = sum(o.num_probes for o in outcomes)
    probe_tokens = num_probes * accelerator.max_probe_tokens  # upper bound: every probe decodes max_probe_tokens
    short_probe_tokens = num_probes * SHORT_PROBE_TOKENS
    agree = sum(o.answer == steps[-1].answer for o, steps in zip(outcomes, traces))
    return {
        "profile": profile.name,
        "setting": setting,
        "traces": len(traces),
        "mean_trace_tokens": total / len(traces),
        "reasoning_tokens_saved_pct": 100 * (total - reasoning) / total,
        "stopped_early_pct": 100 * sum(o.stopped_at is not None for o in outcomes) / len(traces),
        "mean_probes": num_probes / len(traces),
        "probe_decode_tokens_pct": 100 * probe_tokens / total,
        "net_saved_pct": 100 * (total - reasoning - probe_tokens) / total,
        "net_saved_short_probes_pct": 100 * (total - reasoning - short_probe_tokens) / total,
        "answer_is_final_pct": 100 * agree / len(traces),
    }


def esc_row(p_major: float, questions: int, rng: random.Random) -> dict[str, Any]:
    used, agree = [], 0
    for _ in range(questions):
        answers: list[str | None] = []
        for _ in range(ESC_MAX_SAMPLES):
            roll = rng.random()
            answers.append("42" if roll < p_major else None if roll > 0.97 else str(rng.randint(1, 4)))
        drawn = samples_until_consistent(answers, ESC_WINDOW)
        esc_answer = consistent(answers[:drawn], ESC_WINDOW) or majority_vote(answers[:drawn])
        agree += esc_answer == majority_vote(answers)
        used.append(drawn)
    mean_used = statistics.fmean(used)
    return {
        "p_majority_answer": p_major,
        "questions": questions,
        "window": ESC_WINDOW,
        "max_samples": ESC_MAX_SAMPLES,
        "mean_samples": mean_used,
        "samples_saved_pct": 100 * (ESC_MAX_SAMPLES - mean_used) / ESC_MAX_SAMPLES,
        "same_answer_as_full_vote_pct": 100 * agree / questions,
    }


def step_cost_us(repeats: int) -> dict[str, float]:
    """Median cost of the accelerator's per-step calls on an ~8k-token reasoning text."""
    accelerator = AnswerProbeAccelerator()
    text = "We compute the total step by step and carry the remainder along. " * 700
    no_boundary = ReasoningProgress("r", text + " more", " more", 8000)
    boundary = ReasoningProgress("r", text + "\n\n", "\n\n", 8000)

    def median_us(fn: Callable[[], object]) -> float:
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - start) * 1e6)
        return statistics.median(samples)

    def probe_then_release() -> None:
        accelerator.should_probe(boundary)
        accelerator.release("r")

    return {
        "should_probe_no_boundary_us": median_us(lambda: accelerator.should_probe(no_boundary)),
        "should_probe_boundary_and_release_us": median_us(probe_then_release),
        "observe_probe_us": median_us(lambda: accelerator.observe_probe(AnswerProbe("o", 1, "42}", "42", 0.9))),
        "extract_answer_probe_us": median_us(lambda: accelerator.extract_answer(accelerator.probe_suffix + "1,234}")),
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "**Mechanism figures on synthetic traces** (no model; the profiles are made up -- see the script's docstring).",
        "",
        "Early exit. Probe cost in decode tokens, as a share of the trace: at most `max_probe_tokens` (16) per"
        f' probe; net saved after probes of 16 tokens and of {SHORT_PROBE_TOKENS} (a probe stopped at its "}}").',
        "",
        "| answer profile | setting | tokens/trace | reasoning saved | stopped early | probes | probe decode"
        f" (<= 16/probe) | net saved (16/probe) | net saved ({SHORT_PROBE_TOKENS}/probe) | stops on final answer |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["early_exit"]:
        lines.append(
            f"| {r['profile']} | {r['setting']} | {r['mean_trace_tokens']:.0f} | {r['reasoning_tokens_saved_pct']:.1f} %"
            f" | {r['stopped_early_pct']:.0f} % | {r['mean_probes']:.1f} | {r['probe_decode_tokens_pct']:.1f} %"
            f" | {r['net_saved_pct']:.1f} % | {r['net_saved_short_probes_pct']:.1f} % | {r['answer_is_final_pct']:.0f} % |"
        )
    lines += [
        "",
        f"ESC, windows of {ESC_WINDOW} up to {ESC_MAX_SAMPLES} samples (a sample reads the majority answer with"
        " probability p, one of 4 others or nothing otherwise):",
        "",
        "| p | questions | mean samples | samples saved | same answer as the 40-sample vote |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in result["esc"]:
        lines.append(
            f"| {r['p_majority_answer']} | {r['questions']} | {r['mean_samples']:.1f} | {r['samples_saved_pct']:.1f} %"
            f" | {r['same_answer_as_full_vote_pct']:.1f} % |"
        )
    cost = result["step_cost_us"]
    lines += [
        "",
        "Accelerator cost per call (median, this machine; ~8k-token reasoning text):",
        "",
        "| call | us |",
        "|---|---:|",
        *(f"| {name.removesuffix('_us')} | {value:.2f} |" for name, value in cost.items()),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smoke-test size (a few seconds)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    traces_per_profile, questions, repeats = (40, 200, 200) if args.quick else (1000, 5000, 5000)
    early_exit = []
    for index, profile in enumerate(PROFILES):
        rng = random.Random(args.seed * 1000 + index)
        traces = [make_trace(profile, rng) for _ in range(traces_per_profile)]
        early_exit += [early_exit_row(profile, setting, traces) for setting in SETTINGS]
    esc = [esc_row(p, questions, random.Random(args.seed * 1000 + 100 + i)) for i, p in enumerate(ESC_PROFILES)]
    result = {
        "benchmark": "cot_policies",
        "kind": "mechanism figures on synthetic traces, no model",
        "quick": args.quick,
        "seed": args.seed,
        "machine": {"python": platform.python_version(), "cpu": platform.processor(), "loadavg": os.getloadavg()},
        "early_exit": early_exit,
        "esc": esc,
        "step_cost_us": step_cost_us(repeats),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_cot_policies.json").write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result)
    (args.out / "bench_cot_policies.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
