"""KV-cache dtype: what int8 (and bf16 / fp16) KV costs in quality, and what it saves in bytes.

For each cache dtype (``kv_pool.cache_dtype``) the same model runs through
the engine's own paged-KV path (``ModelRunner`` over a pool built by the
registry):

* **perplexity** on the first ``windows x window`` tokens of tinyshakespeare,
  each window fed in chunks of ``chunk`` tokens (chunked prefill), so every
  chunk after the first attends to the earlier chunks' KV *as the cache
  stores it* (int8 codes dequantized by their per-block scales); plus,
  against the float32 cache at the same compute dtype, the share of
  positions whose top-1 token is unchanged and the mean KL divergence;
* **KV bytes per token** (int8: codes + float32 scales per block, layer,
  K/V) and the tokens a 1 GiB pool holds;
* **decode tok/s** at the engine's default compute dtype for batch 1 and a
  batch of concurrent requests (greedy, same prompts), dtypes interleaved
  round by round so machine load hits them alike; and how many greedy
  tokens equal the float32 cache's.

The text ships with the package (``data/tinyshakespeare_head.txt``, the
first 60 kB of tinyshakespeare, public-domain text; see data/README.md),
so this runs anywhere; ``--text`` takes another file.

Usage::

    python engines/benchmarks/bench_kv_cache_dtype.py                # full: 8 windows x 512 tokens (see README for time)
    python engines/benchmarks/bench_kv_cache_dtype.py --quick        # CI smoke
    python engines/benchmarks/bench_kv_cache_dtype.py --only decode  # one section: perplexity or decode

Writes ``results/kv_cache_dtype.json`` and ``results/kv_cache_dtype.md`` (or ``--out DIR``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from sagellm.core.config import load_config
from sagellm.core.types import Request, SamplingParams, SequenceState
from sagellm.engines import LLM, LLMEngine
from sagellm.engines.engine.builder import DTYPE_NAMES, assemble_engine
from sagellm.engines.engine.device import resolve_dtype
from sagellm.engines.runtime.input_batch import ChunkWork

HERE = Path(__file__).resolve().parent
TEXT = HERE / "data" / "tinyshakespeare_head.txt"
REFERENCE = "float32"  # the cache every other dtype is compared with
GIB = 1024**3


@dataclass(frozen=True)
class Plan:
    windows: int = 8
    window: int = 512
    chunk: int = 32
    cache_dtypes: tuple[str, ...] = ("float32", "bfloat16", "float16", "int8")
    default_cache_dtypes: tuple[str, ...] = ("float32", "bfloat16", "int8")  # at the engine's default compute dtype
    prompt_len: int = 128
    new_tokens: int = 64
    batches: tuple[int, ...] = (1, 16)
    rounds: int = 3
    threads: int = 2

    @classmethod
    def quick(cls) -> Plan:
        return cls(
            windows=1,
            window=128,
            cache_dtypes=("float32", "bfloat16", "int8"),
            default_cache_dtypes=("float32", "int8"),
            prompt_len=32,
            new_tokens=8,
            batches=(1, 4),
            rounds=1,
        )


# ---------------------------------------------------------------------------- engines
class Engines:
    """One loaded model per compute dtype; a fresh engine (pool) per cache dtype around it."""

    def __init__(self, threads: int) -> None:
        self._models: dict[str, LLM] = {}
        self._threads = threads

    def llm(self, compute: str) -> LLM:
        if compute not in self._models:
            model = {"dtype": compute, "device": "cpu", "num_threads": self._threads}
            self._models[compute] = LLM(model=model, show_progress=False)
        return self._models[compute]

    def engine(self, compute: str, cache: str, num_blocks: int) -> LLMEngine:
        llm = self.llm(compute)
        config = load_config(
            model={"dtype": compute, "device": "cpu"}, kv_pool={"num_blocks": num_blocks, "cache_dtype": cache}
        )
        return assemble_engine(config, llm.engine.runner.model, llm.tokenizer)


# ---------------------------------------------------------------------------- perplexity
@dataclass
class Quality:
    nll: float = 0.0
    tokens: int = 0
    top1_same: int = 0
    kl: float = 0.0

    def row(self) -> dict[str, float]:
        return {
            "perplexity": math.exp(self.nll / self.tokens),
            "top1_agreement": self.top1_same / self.tokens,
            "mean_kl": self.kl / self.tokens,
        }


def window_logits(engine: LLMEngine, token_ids: list[int], chunk: int) -> torch.Tensor:
    """[len, vocab] logits of one window, fed chunk by chunk through the engine's paged KV path."""
    pool, runner = engine.kv.pool, engine.runner
    blocks = pool.allocate(-(-len(token_ids) // pool.layout.block_size))
    seq = SequenceState(Request("perplexity", tuple(token_ids)))
    seq.block_ids = blocks
    try:
        with torch.inference_mode():
            parts = [
                runner.logits_of_every_token([ChunkWork(seq, start, min(chunk, len(token_ids) - start))])
                for start in range(0, len(token_ids), chunk)
            ]
    finally:
        pool.free(blocks)
    return torch.cat(parts)


def perplexities(engines: Engines, compute: str, cache_dtypes: tuple[str, ...], ids: list[int], plan: Plan) -> dict:
    assert cache_dtypes[0] == REFERENCE, "the reference cache runs first in every window"
    blocks = -(-plan.window // 16) + 1
    built = {cache: engines.engine(compute, cache, blocks) for cache in cache_dtypes}
    scores = {cache: Quality() for cache in cache_dtypes}
    seconds = dict.fromkeys(cache_dtypes, 0.0)
    for w in range(plan.windows):
        piece = ids[w * plan.window : (w + 1) * plan.window]
        targets = torch.tensor(piece[1:])
        reference = None
        for cache in cache_dtypes:  # REFERENCE first
            started = time.perf_counter()
            logits = window_logits(built[cache], piece, plan.chunk)[:-1]
            seconds[cache] += time.perf_counter() - started
            logp = logits.log_softmax(-1)
            if reference is None:
                reference = logp
            score = scores[cache]
            score.nll += float(F.nll_loss(logp, targets, reduction="sum"))
            score.tokens += len(targets)
            score.top1_same += int((logp.argmax(-1) == reference.argmax(-1)).sum())
            score.kl += float(F.kl_div(logp, reference, log_target=True, reduction="sum"))
    return {cache: {**scores[cache].row(), "seconds": seconds[cache]} for cache in cache_dtypes}


# ---------------------------------------------------------------------------- decode speed
def prompts_of(ids: list[int], count: int, length: int) -> list[list[int]]:
    stride = max(1, (len(ids) - length) // (count + 1))
    return [ids[(i + 1) * stride : (i + 1) * stride + length] for i in range(count)]


def decode_run(engine: LLMEngine, prompts: list[list[int]], new_tokens: int) -> tuple[float, list[list[int]]]:
    """Decode tok/s (tokens after each request's first, over the time after the first token) and the tokens."""
    greedy = SamplingParams(max_tokens=new_tokens, temperature=0.0, ignore_eos=True)
    rids = [engine.add_request(p, greedy) for p in prompts]
    tokens: dict[str, list[int]] = {rid: [] for rid in rids}
    first = None
    while engine.has_unfinished():
        for out in engine.step():
            if first is None:
                first = time.perf_counter()
            tokens[out.request_id].extend(out.new_token_ids)
    elapsed = time.perf_counter() - (first or time.perf_counter())
    decoded = sum(len(t) for t in tokens.values()) - len(prompts)  # the first token of each comes from prefill
    return decoded / elapsed, [tokens[rid] for rid in rids]


def common_prefix(ours: list[list[int]], reference: list[list[int]]) -> float:
    """Mean share of each greedy output before its first token that differs from the reference's.

    Greedy text that parts at a near-tie goes on differently, so counting
    equal positions after the split would measure nothing; the split point does.
    """
    shares = []
    for x, y in zip(ours, reference):
        split = next((i for i, (a, b) in enumerate(zip(x, y)) if a != b), len(y))
        shares.append(split / len(y))
    return sum(shares) / len(shares)


def decode_speeds(engines: Engines, compute: str, ids: list[int], plan: Plan) -> dict:
    blocks = max(plan.batches) * -(-(plan.prompt_len + plan.new_tokens) // 16) + 8
    built = {cache: engines.engine(compute, cache, blocks) for cache in plan.default_cache_dtypes}
    decode_run(built[REFERENCE], prompts_of(ids, 1, 16), 4)  # warm-up
    result: dict[str, dict[str, Any]] = {cache: {} for cache in built}
    for batch in plan.batches:
        prompts = prompts_of(ids, batch, plan.prompt_len)
        speeds: dict[str, list[float]] = {cache: [] for cache in built}
        outputs: dict[str, list[list[int]]] = {}
        for _ in range(plan.rounds):
            for cache, engine in built.items():
                tok_s, outputs[cache] = decode_run(engine, prompts, plan.new_tokens)
                speeds[cache].append(tok_s)
        for cache in built:
            result[cache][f"batch_{batch}"] = {
                "decode_tok_s": statistics.median(speeds[cache]),
                "runs": speeds[cache],
                "greedy_prefix_equal_to_float32_cache": common_prefix(outputs[cache], outputs[REFERENCE]),
            }
    return result


# ---------------------------------------------------------------------------- bytes
def kv_bytes(engines: Engines, compute: str, cache_dtypes: tuple[str, ...]) -> dict:
    out = {}
    for cache in cache_dtypes:
        layout = engines.engine(compute, cache, 2).kv.pool.layout
        blocks_per_gib = GIB // layout.bytes_per_block
        out[cache] = {
            "bytes_per_block": layout.bytes_per_block,
            "bytes_per_token": layout.bytes_per_block / layout.block_size,
            "tokens_per_gib": blocks_per_gib * layout.block_size,
        }
    return out


# ---------------------------------------------------------------------------- report
def markdown(report: dict[str, Any]) -> str:
    sections = [perplexity_table(report)] if report["perplexity"] else []
    if report["decode"]:
        sections.append(decode_table(report))
    return "\n".join(sections)


def perplexity_table(report: dict[str, Any]) -> str:
    plan = report["plan"]
    lines = [
        f"Perplexity: first {plan['windows']} x {plan['window']} tokens of tinyshakespeare, chunks of "
        f"{plan['chunk']} tokens through the paged KV path; agreement and KL against the float32 cache "
        "at the same compute dtype.",
        "",
        "| compute | KV cache | perplexity | vs float32 cache | top-1 agreement | mean KL (nats) | bytes/token |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for compute, rows in report["perplexity"].items():
        base = rows[REFERENCE]["perplexity"]
        for cache, row in rows.items():
            lines.append(
                f"| {compute} | {cache} | {row['perplexity']:.3f} | {100 * (row['perplexity'] / base - 1):+.2f} % |"
                f" {row['top1_agreement']:.4f} | {row['mean_kl']:.5f} | {report['kv_bytes'][cache]['bytes_per_token']:,.0f} |"
            )
    return "\n".join(lines) + "\n"


def decode_table(report: dict[str, Any]) -> str:
    plan, compute_default = report["plan"], report["default_compute_dtype"]
    batches = list(next(iter(report["decode"].values())))
    lines = [
        f"Decode at the default compute dtype ({compute_default}), {plan['prompt_len']}-token prompts, "
        f"{plan['new_tokens']} greedy tokens, median of {plan['rounds']} interleaved rounds:",
        "",
        "| KV cache | bytes/token | tokens in 1 GiB | "
        + " | ".join(f"{b.replace('_', ' ')} decode tok/s" for b in batches)
        + " | greedy text = float32 cache's until |",
        "|---|---:|---:|" + "---:|" * len(batches) + "---:|",
    ]
    for cache, row in report["decode"].items():
        sizes = report["kv_bytes"][cache]
        same = sum(row[b]["greedy_prefix_equal_to_float32_cache"] for b in batches) / len(batches)
        lines.append(
            f"| {cache} | {sizes['bytes_per_token']:,.0f} | {sizes['tokens_per_gib']:,} | "
            + " | ".join(f"{row[b]['decode_tok_s']:.1f}" for b in batches)
            + f" | {100 * same:.0f} % of the tokens |"
        )
    return "\n".join(lines) + "\n"


def environment(threads: int) -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "threads": threads,
        "load_average": os.getloadavg(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes for a CI smoke run")
    parser.add_argument("--text", default=str(TEXT), help="plain text to score (default: the shipped excerpt)")
    parser.add_argument("--out", default=str(HERE / "results"), help="output directory")
    parser.add_argument("--only", choices=["perplexity", "decode"], help="run one section (default: both)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = parser.parse_args()
    plan = replace(Plan.quick() if args.quick else Plan(), threads=args.threads)
    torch.set_num_threads(plan.threads)
    engines = Engines(plan.threads)
    default_compute = DTYPE_NAMES[resolve_dtype("auto", torch.device("cpu"))]
    ids = engines.llm(default_compute).tokenizer.encode(Path(args.text).read_text())
    if len(ids) < plan.windows * plan.window:
        print(f"{args.text} has {len(ids)} tokens, fewer than {plan.windows} x {plan.window}", file=sys.stderr)
        return 1
    started = time.perf_counter()
    groups = {"float32": plan.cache_dtypes}
    if default_compute != "float32":
        groups[default_compute] = plan.default_cache_dtypes
    report: dict[str, Any] = {
        "plan": asdict(plan),
        "default_compute_dtype": default_compute,
        "perplexity": {},
        "decode": {},
        "kv_bytes": kv_bytes(engines, "float32", tuple(dict.fromkeys(plan.cache_dtypes + plan.default_cache_dtypes))),
        "environment": environment(plan.threads),
    }
    if args.only in (None, "perplexity"):
        for compute, caches in groups.items():
            print(f"perplexity, compute {compute}: {', '.join(caches)} ...", file=sys.stderr, flush=True)
            report["perplexity"][compute] = perplexities(engines, compute, caches, ids, plan)
    if args.only in (None, "decode"):
        print(f"decode, compute {default_compute} ...", file=sys.stderr, flush=True)
        report["decode"] = decode_speeds(engines, default_compute, ids, plan)
    report["seconds"] = time.perf_counter() - started
    report["environment"]["load_average_after"] = os.getloadavg()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "kv_cache_dtype.json").write_text(json.dumps(report, indent=2))
    table = markdown(report)
    (out / "kv_cache_dtype.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
