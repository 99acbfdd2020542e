"""Long prompts on a RoPE-scaled SmolLM2: TTFT, TPOT and peak memory at 8K, 16K and 32K tokens.

SmolLM2-135M was trained to 8,192 positions; ``--rope-scaling`` (YaRN x4)
stretches it to 32,768. Each prompt (tinyshakespeare, repeated to length)
is served through the engine with chunked prefill (``--chunk`` tokens a
step), then 32 greedy tokens are decoded; each (length, KV cache dtype)
runs in a fresh process so its peak resident memory is its own. Reported:

* TTFT (the whole prefill) and TPOT (mean time per decoded token);
* resident memory after load, its peak, and the growth between them next
  to the KV cache's own size for that many tokens: memory that grows only
  with the KV shows as a growth close to the KV bytes (plus one chunk's
  transient activations), and int8 KV halving (quartering, from float32)
  it shows as a smaller growth;
* that a prompt one token past ``--max-model-len`` is refused with
  ContextLengthExceededError (HTTP 400 in the server) rather than run out
  of memory.

llama.cpp on the same file, where a build is found (``--llama-cpp DIR``;
``../shared/tools/build_llama_server.sh`` makes one): ``llama-server`` with
one slot serves the same prompt ids once, and its reply's timings give
TTFT (its prompt time) and TPOT, f16 KV (``--llama-cpp-cache int8`` adds
its q8_0 cache), at the same thread count, with the same YaRN x4 through
its own flags.

Usage::

    python engines/benchmarks/bench_long_context.py                  # 8K, 16K, 32K x auto, int8 (~30 min, 2 cores)
    python engines/benchmarks/bench_long_context.py --lengths 8192   # one length
    python engines/benchmarks/bench_long_context.py --quick          # CI smoke: 1,024 tokens

Writes ``results/long_context.json`` and ``.md`` (or ``--out DIR``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sagellm.core.errors import ContextLengthExceededError
from sagellm.core.types import SamplingParams, StepOutput
from sagellm.engines import LLM
from sagellm.engines.bench.environment import cpu_model_name
from sagellm.engines.bench.peak_memory import current_rss_mb, process_peak_rss_mb
from sagellm.engines.bench.report import write_json_and_markdown
from sagellm.engines.engine.device import dtype_name

HERE = Path(__file__).resolve().parent
TEXT = HERE / "data" / "tinyshakespeare_head.txt"
YARN_X4 = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 8192}
NEW_TOKENS = 32
BLOCK = 16
MIB = 1024**2


def rss_mib() -> float:
    """Resident memory now, MiB (``peak_memory.current_rss_mb``; NaN off Linux)."""
    return current_rss_mb() or float("nan")


def peak_rss_mib() -> float:
    return process_peak_rss_mb() or float("nan")


def prompt_ids(llm: LLM, length: int) -> list[int]:
    ids = llm.tokenizer.encode(TEXT.read_text(), add_special_tokens=False)
    return (ids * (length // len(ids) + 1))[:length]


def kv_bytes(llm: LLM, tokens: int) -> int:
    """K and V of ``tokens`` tokens as the pool stores them (int8: codes plus per-block float32 scales)."""
    layout = llm.engine.kv.pool.layout
    blocks = -(-tokens // layout.block_size)
    return blocks * layout.bytes_per_block


def run_one(model: str | None, length: int, cache_dtype: str, chunk: int, threads: int | None) -> dict[str, Any]:
    """One (length, cache dtype) in this process: TTFT, TPOT, memory, and the over-length refusal."""
    max_len = length + NEW_TOKENS
    llm = LLM(
        model={"path": model, "rope_scaling": dict(YARN_X4), "max_model_len": max_len, "num_threads": threads},
        kv_pool={"num_blocks": -(-max_len // BLOCK) + 4, "block_size": BLOCK, "cache_dtype": cache_dtype},
        scheduler_ir={"max_num_batched_tokens": chunk},
        show_progress=False,
    )
    loaded = rss_mib()
    prompt = prompt_ids(llm, length)
    stamps: list[float] = []

    def on_output(output: StepOutput) -> None:
        stamps.extend(time.perf_counter() for _ in output.new_token_ids)

    params = SamplingParams(temperature=0.0, max_tokens=NEW_TOKENS, ignore_eos=True)
    started = time.perf_counter()
    (result,) = llm.generate([prompt], params, on_output=on_output)
    ttft = stamps[0] - started
    tpot = (stamps[-1] - stamps[0]) / max(1, len(stamps) - 1)
    try:
        llm.generate([prompt_ids(llm, max_len + 1)], SamplingParams(max_tokens=1))
        refused = False
    except ContextLengthExceededError:
        refused = True
    peak = peak_rss_mib()
    return {
        "length": length,
        "cache_dtype": cache_dtype,
        "dtype": dtype_name(llm.engine.runner.model.dtype),
        "max_model_len": llm.engine.max_model_len,
        "tokens": len(result.token_ids),
        "ttft_s": round(ttft, 2),
        "tpot_ms": round(tpot * 1000, 1),
        "rss_loaded_mib": round(loaded),
        "rss_peak_mib": round(peak),
        "growth_mib": round(peak - loaded),
        "kv_mib": round(kv_bytes(llm, max_len) / MIB, 1),
        "over_length_refused": refused,
    }


def run_in_subprocess(args: argparse.Namespace, length: int, cache_dtype: str) -> dict[str, Any]:
    command = [sys.executable, __file__, "--one", str(length), cache_dtype, "--chunk", str(args.chunk)]
    command += [] if args.model is None else ["--model", args.model]
    command += [] if args.threads is None else ["--threads", str(args.threads)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{length} tokens, {cache_dtype} KV failed:\n{done.stderr[-2000:]}")
    row: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return row


LLAMA_KV = {"auto": (), "int8": ("-ctk", "q8_0", "-ctv", "q8_0", "-fa", "on")}
# YARN_X4 in llama.cpp's flags: its server caps the context at the file's trained 8,192 positions otherwise.
LLAMA_YARN_X4 = ("--rope-scaling", "yarn", "--rope-scale", "4", "--yarn-orig-ctx", "8192")


def llama_cpp_rows(args: argparse.Namespace, lengths: list[int]) -> list[dict[str, Any]]:
    """llama.cpp's TTFT and TPOT for the same prompt ids (same file, same threads), or [] where not built."""
    from sagellm.engines.bench.llama_bench import llama_server_request
    from sagellm.engines.bench.served_peers import find_llama_server
    from sagellm.engines.model.default_model import default_model_path
    from sagellm.engines.model.tokenizer_loader import load_tokenizer

    server = find_llama_server(args.llama_cpp)
    if server is None:
        print("llama.cpp: no llama-server found (--llama-cpp DIR): no comparison", file=sys.stderr)
        return []
    model = Path(args.model) if args.model else default_model_path()
    ids = load_tokenizer(args.model).encode(TEXT.read_text(), add_special_tokens=False)
    threads = args.threads or 2
    rows = []
    for length in lengths:
        prompt = (ids * (length // len(ids) + 1))[:length]
        for cache_dtype in args.llama_cpp_cache:
            extra = (*LLAMA_KV[cache_dtype], *LLAMA_YARN_X4)
            timings = llama_server_request(server, model, threads, prompt, NEW_TOKENS, extra)
            rows.append(
                {
                    "length": length,
                    "cache_dtype": "f16" if cache_dtype == "auto" else "q8_0",
                    "ttft_s": round(timings.prompt_ms / 1000, 2),
                    "tpot_ms": round(timings.ms_per_token, 1),
                    "prompt_tokens": timings.prompt_tokens,
                    "threads": threads,
                }
            )
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def markdown(rows: list[dict[str, Any]], chunk: int, llama_cpp: list[dict[str, Any]] | None = None) -> str:
    lines = [
        f"# Long prompts, SmolLM2-135M with YaRN x4 (32,768 positions), {cpu_model_name()}",
        "",
        f"Chunked prefill of {chunk} tokens a step, then {NEW_TOKENS} greedy tokens; one process per row.",
        "",
        "| prompt tokens | KV cache | compute | TTFT (s) | TPOT (ms) | RSS after load (MiB) | peak RSS (MiB) "
        "| growth (MiB) | KV size (MiB) | one token over refused |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['length']:,} | {r['cache_dtype']} | {r['dtype']} | {r['ttft_s']} | {r['tpot_ms']} "
            f"| {r['rss_loaded_mib']} | {r['rss_peak_mib']} | {r['growth_mib']} | {r['kv_mib']} "
            f"| {'yes' if r['over_length_refused'] else 'NO'} |"
        )
    if llama_cpp:
        lines += [
            "",
            f"llama.cpp (llama-server, one slot, no prompt cache, {llama_cpp[0]['threads']} threads), same file and "
            "prompt ids (its reply's timings):",
            "",
            "| prompt tokens | KV cache | TTFT (s) | TPOT (ms) | sageLLM TTFT / llama.cpp | sageLLM TPOT / llama.cpp |",
            "|---:|---|---:|---:|---:|---:|",
        ]
        ours = {(r["length"], r["cache_dtype"]): r for r in rows}
        for r in llama_cpp:
            mine = ours.get((r["length"], "auto" if r["cache_dtype"] == "f16" else "int8"))
            ratio_ttft = f"{mine['ttft_s'] / r['ttft_s']:.2f}" if mine else "-"
            ratio_tpot = f"{mine['tpot_ms'] / r['tpot_ms']:.2f}" if mine else "-"
            lines.append(
                f"| {r['length']:,} | {r['cache_dtype']} | {r['ttft_s']} | {r['tpot_ms']} | {ratio_ttft} | {ratio_tpot} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a GGUF file or HF directory (default: the embedded SmolLM2)")
    parser.add_argument("--lengths", type=int, nargs="+", default=[8192, 16384, 32704])
    parser.add_argument("--cache-dtypes", nargs="+", default=["auto", "int8"])
    parser.add_argument("--chunk", type=int, default=2048, help="prefill tokens per step")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--quick", action="store_true", help="CI smoke: 1,024 tokens, both cache dtypes")
    parser.add_argument("--llama-cpp", help="llama.cpp's build folder (default: where build_llama_server.sh puts it)")
    parser.add_argument("--no-llama-cpp", action="store_true", help="skip the llama.cpp rows")
    parser.add_argument(
        "--llama-cpp-cache",
        nargs="+",
        choices=tuple(LLAMA_KV),
        default=["auto"],
        help="llama.cpp KV caches to run: auto (its f16) and/or int8 (its q8_0; long prompts take minutes each)",
    )
    parser.add_argument("--llama-cpp-only", action="store_true", help="only the llama.cpp rows")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--one", nargs=2, metavar=("LENGTH", "CACHE_DTYPE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one is not None:
        row = run_one(args.model, int(args.one[0]), args.one[1], args.chunk, args.threads)
        print(json.dumps(row))
        return 0
    lengths = [1024] if args.quick else args.lengths
    rows = []
    for length in [] if args.llama_cpp_only else lengths:
        for cache_dtype in args.cache_dtypes:
            rows.append(run_in_subprocess(args, length, cache_dtype))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    llama_cpp = [] if args.no_llama_cpp else llama_cpp_rows(args, lengths)
    report = {
        "cpu": cpu_model_name(),
        "chunk": args.chunk,
        "rope_scaling": YARN_X4,
        "rows": rows,
        "llama_cpp": llama_cpp,
    }
    write_json_and_markdown(report, markdown(rows, args.chunk, llama_cpp), args.out, "long_context")
    return 0 if all(r["over_length_refused"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
