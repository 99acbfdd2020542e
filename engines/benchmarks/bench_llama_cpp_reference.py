"""The path users run against llama.cpp on the same GGUF: perplexity, and greedy agreement.

* Perplexity: ``llama-perplexity`` and sageLLM's served-path perplexity
  (engine/served_perplexity.py: llama.cpp's chunks and scored positions,
  each scored row from the serving path) on the same text, context and
  chunks, for sageLLM at its defaults (bf16, 4-bit decode, int8 head, fused
  kernels), with w8a8, and with w8a8 plus an int8 KV cache. Target: within 1 %.
* Greedy agreement: the same prompts, greedy, through sageLLM's engine and
  ``llama-server`` (its native ``/completion`` with ``return_tokens``);
  reported as the share of identical continuations and the mean length of
  the common prefix. Two engines that round differently part at the first
  near-tie, so this is reported, not gated.

Usage::

    python engines/benchmarks/bench_llama_cpp_reference.py                # ~3 min on 2 cores
    python engines/benchmarks/bench_llama_cpp_reference.py --n-ctx 512 --chunks 16
    python engines/benchmarks/bench_llama_cpp_reference.py --quick          # CI smoke; skips without llama.cpp

Needs llama.cpp's binaries (``../shared/tools/build_llama_server.sh``;
``--llama-server PATH`` or ``$SAGELLM_LLAMA_SERVER``). Writes
``results/llama_cpp_reference.json`` and ``.md`` (or ``--out DIR``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from sagellm.core.ports import ephemeral_port
from sagellm.core.types import SamplingParams
from sagellm.engines import LLM
from sagellm.engines.bench.environment import cpu_model_name
from sagellm.engines.bench.llama_perplexity import llama_perplexity
from sagellm.engines.bench.report import write_json_and_markdown
from sagellm.engines.bench.served_peers import (
    LLAMA_SERVER_HINT,
    find_llama_server,
    find_llama_tool,
    llama_server_command,
)
from sagellm.engines.bench.server_process import running_server
from sagellm.engines.engine.served_perplexity import served_perplexity
from sagellm.engines.model.loader import resolve_model_path

HERE = Path(__file__).resolve().parent
TEXT = HERE / "data" / "tinyshakespeare_head.txt"
THREADS = 2
CONFIGS: dict[str, dict[str, Any]] = {
    "default (bf16, 4-bit, int8 head, fused)": {},
    "w8a8": {"quantization": {"implementation": "w8a8"}},
    "w8a8 + int8 KV": {"quantization": {"implementation": "w8a8"}, "kv_pool": {"cache_dtype": "int8"}},
}


def greedy_prompts(llm: LLM, count: int, length: int) -> list[list[int]]:
    ids = llm.tokenizer.encode(TEXT.read_text())
    stride = (len(ids) - length) // count
    return [ids[i * stride : i * stride + length] for i in range(count)]


def llama_server_greedy(base_url: str, prompts: list[list[int]], new_tokens: int) -> list[list[int]]:
    root = base_url.removesuffix("/v1")
    outputs = []
    for prompt in prompts:
        body = {"prompt": prompt, "n_predict": new_tokens, "temperature": 0.0, "top_k": 1, "ignore_eos": True}
        body |= {"return_tokens": True, "cache_prompt": False}
        response = httpx.post(f"{root}/completion", json=body, timeout=300)
        response.raise_for_status()
        outputs.append([int(t) for t in response.json()["tokens"]])
    return outputs


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    length = 0
    for x, y in zip(a, b):
        if x != y:
            break
        length += 1
    return length


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"llama.cpp reference, {report['cpu']}: perplexity of {report['text']} (n_ctx {report['n_ctx']}, "
        f"{report['chunks']} chunks, second half of each scored); llama-perplexity: "
        f"{report['llama_cpp_perplexity']:.4f}.",
        "",
        "| sageLLM config | perplexity | vs llama.cpp | top-1 = next token |",
        "|---|---:|---:|---:|",
    ]
    for name, row in report["perplexity"].items():
        lines.append(f"| {name} | {row['perplexity']:.4f} | {row['ratio'] - 1:+.2%} | {row['top1_agreement']:.1%} |")
    greedy = report["greedy"]
    lines += [
        "",
        f"Greedy agreement with llama-server ({greedy['prompts']} prompts x {greedy['new_tokens']} tokens, "
        f"sageLLM defaults): {greedy['identical']} identical, mean common prefix "
        f"{greedy['mean_common_prefix']:.1f} tokens.",
    ]
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-ctx", type=int, default=512)
    parser.add_argument("--chunks", type=int, default=8)
    parser.add_argument("--prompts", type=int, default=8, help="greedy agreement: prompts (default 8)")
    parser.add_argument("--new-tokens", type=int, default=64, help="greedy agreement: tokens each (default 64)")
    parser.add_argument("--llama-server", help="llama.cpp's llama-server binary (or its folder)")
    parser.add_argument("--quick", action="store_true", help="smoke run: n_ctx 128, 2 chunks, 2 prompts x 16 tokens")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    if args.quick:
        args.n_ctx, args.chunks, args.prompts, args.new_tokens = 128, 2, 2, 16
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    server = find_llama_server(args.llama_server)
    tool = None if server is None else find_llama_tool(server, "llama-perplexity")
    if server is None or tool is None:
        print(f"llama.cpp's binaries not found, nothing measured: {LLAMA_SERVER_HINT}", file=sys.stderr)
        return 0 if args.quick else 2  # a CI smoke run without llama.cpp is not a failure
    gguf = resolve_model_path(None)
    reference = llama_perplexity(tool, gguf, TEXT, args.n_ctx, args.chunks, THREADS)
    rows: dict[str, Any] = {}
    greedy: dict[str, Any] = {}
    for name, sections in CONFIGS.items():
        llm = LLM(show_progress=False, **sections)
        ids = llm.tokenizer.encode(TEXT.read_text())
        ours = served_perplexity(llm.engine, ids, args.n_ctx, args.chunks)
        rows[name] = {"perplexity": ours.perplexity, "ratio": ours.perplexity / reference.perplexity,
                      "top1_agreement": ours.top1_agreement, "scored": ours.num_scored}  # fmt: skip
        print(f"{name}: {ours.perplexity:.4f} vs llama.cpp {reference.perplexity:.4f}", file=sys.stderr)
        if not greedy:
            prompts = greedy_prompts(llm, args.prompts, 64)
            params = SamplingParams(max_tokens=args.new_tokens, temperature=0.0, ignore_eos=True)
            ours_greedy = [r.token_ids for r in llm.generate(prompts, params)]
            with running_server(llama_server_command(server, gguf, ephemeral_port(), 1, THREADS)) as url:
                theirs = llama_server_greedy(url, prompts, args.new_tokens)
            prefixes = [common_prefix(a, b) for a, b in zip(ours_greedy, theirs)]
            greedy = {"prompts": len(prompts), "new_tokens": args.new_tokens, "common_prefix": prefixes,
                      "identical": sum(p == args.new_tokens for p in prefixes),
                      "mean_common_prefix": sum(prefixes) / len(prefixes)}  # fmt: skip
    report = {
        "cpu": cpu_model_name(),
        "text": TEXT.name,
        "n_ctx": args.n_ctx,
        "chunks": reference.num_chunks,
        "llama_cpp_perplexity": reference.perplexity,
        "llama_cpp_stderr": reference.stderr,
        "perplexity": rows,
        "greedy": greedy,
    }
    write_json_and_markdown(report, markdown(report), args.out, "llama_cpp_reference")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
