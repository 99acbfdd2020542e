"""Engine benchmark: sageLLM vs Hugging Face transformers and llama.cpp's server, side by side.

Each side runs in its own subprocess (clean peak-memory numbers, no shared
thread pools), on the same GGUF model, with the same token ids. sageLLM
runs at its default dtype (``auto``: bf16 on CPUs with native bf16 dot
products, else fp32); transformers runs at fp32 and, where the CPU has
native bf16, at bf16 too, so each ratio is against a peer at the same
precision as well as against the fp32 reference. sageLLM also runs with
``--quantization w8a8``, with w8a8 plus ``--kv-cache-dtype int8`` (every
speed option on), and without the fused kernels. llama.cpp runs as its own
server (``llama-server``, its Q4_1 kernels on the same GGUF, as many parallel
slots as the largest concurrency, its prompt cache on), where a build is
found (``../shared/tools/build_llama_server.sh``): the shared-prefix TTFT is
compared with llama.cpp's own prompt cache, not only with a peer that has
none. Scenarios (the issue's list):

* batch-1 decode tokens/s (128-token prompt, 128 new tokens);
* aggregate tokens/s with 16 and 64 concurrent requests (sageLLM: all
  submitted at once, continuous batching; transformers: one padded batch;
  llama-server: concurrent HTTP requests into its slots);
* TTFT for a 1,000-token shared prefix, cold and with a prefix-cache hit;
* peak resident memory of each process.

Usage::

    python engines/benchmarks/bench_engine.py            # full run, ~15-25 min on 2 cores
    python engines/benchmarks/bench_engine.py --quick    # CI smoke, ~2 min
    python engines/benchmarks/bench_engine.py --only sagellm --only transformers-fp32

Writes ``results/engine_bench.json`` and ``results/engine_bench.md`` (or ``--out DIR``).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TEXT = HERE / "data" / "tinyshakespeare_head.txt"


@dataclass(frozen=True)
class Plan:
    prompt_len: int = 128
    new_tokens: int = 128
    concurrency: tuple[int, ...] = (16, 64)
    prefix_len: int = 1000
    threads: int = 2

    @classmethod
    def quick(cls) -> Plan:
        return cls(prompt_len=32, new_tokens=16, concurrency=(4,), prefix_len=256)


def prompt_ids(tokenizer_encode: Any, count: int, length: int, offset: int = 0) -> list[list[int]]:
    """``count`` distinct prompts of exactly ``length`` tokens cut from real text."""
    ids = tokenizer_encode(TEXT.read_text())
    stride = max(1, (len(ids) - length) // max(1, count + offset))
    return [ids[(i + offset) * stride : (i + offset) * stride + length] for i in range(count)]


# ---------------------------------------------------------------------------- workers
def run_sagellm(
    plan: Plan, quantization: str = "none", kernel_fusion: str = "auto", kv_cache_dtype: str = "auto"
) -> dict[str, Any]:
    import torch

    from sagellm.core.types import SamplingParams
    from sagellm.engines import LLM

    torch.set_num_threads(plan.threads)
    llm = LLM(
        show_progress=False,
        quantization={"implementation": quantization},
        kernel_fusion={"implementation": kernel_fusion},
        kv_pool={"cache_dtype": kv_cache_dtype},
    )
    engine = llm.engine
    encode = llm.tokenizer.encode
    greedy = SamplingParams(max_tokens=plan.new_tokens, temperature=0.0, ignore_eos=True)
    results: dict[str, Any] = {}
    llm.generate(prompt_ids(encode, 1, plan.prompt_len, offset=99), SamplingParams(max_tokens=4))  # warm-up

    (prompt,) = prompt_ids(encode, 1, plan.prompt_len)
    rid = engine.add_request(prompt, greedy)
    start, first, count = time.perf_counter(), None, 0
    while engine.has_unfinished():
        for out in engine.step():
            first = first or time.perf_counter()
            count += len(out.new_token_ids)
    end = time.perf_counter()
    results["batch1"] = {
        "tokens": count,
        "e2e_tok_s": count / (end - start),
        "decode_tok_s": (count - 1) / (end - first),
        "ttft_ms": (first - start) * 1000,
    }
    del rid

    for n in plan.concurrency:
        prompts = prompt_ids(encode, n, plan.prompt_len, offset=n)
        start = time.perf_counter()
        outs = llm.generate(prompts, greedy)
        elapsed = time.perf_counter() - start
        tokens = sum(len(o.token_ids) for o in outs)
        results[f"concurrent_{n}"] = {
            "tokens": tokens,
            "tok_s": tokens / elapsed,
            "seconds": elapsed,
            "preemptions": engine.metrics.counter("preemptions_total").value,
        }

    (prefix,) = prompt_ids(encode, 1, plan.prefix_len, offset=7)
    suffixes = prompt_ids(encode, 2, 16, offset=3)
    one = SamplingParams(max_tokens=1, temperature=0.0)
    results["ttft_cold_ms"] = _ttft(llm, prefix + suffixes[0], one)
    results["ttft_prefix_hit_ms"] = _ttft(llm, prefix + suffixes[1], one)
    results["prefix_hit_rate"] = engine.kv.hit_rate()
    results["dtype"] = str(llm.engine.runner.model.dtype).replace("torch.", "")
    results["quantization"] = quantization
    results["kernel_fusion"] = kernel_fusion
    results["kv_cache_dtype"] = kv_cache_dtype
    results["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return results


def run_sagellm_w8a8(plan: Plan) -> dict[str, Any]:
    return run_sagellm(plan, quantization="w8a8")


def run_sagellm_w8a8_kv8(plan: Plan) -> dict[str, Any]:
    """Every speed option: int8 weights and activations, int8 KV cache."""
    return run_sagellm(plan, quantization="w8a8", kv_cache_dtype="int8")


def run_sagellm_unfused(plan: Plan) -> dict[str, Any]:
    """The default without the fused CPU kernels: what the PyTorch ops alone give."""
    return run_sagellm(plan, kernel_fusion="none")


def _ttft(llm: Any, prompt: list[int], params: Any) -> float:
    start = time.perf_counter()
    llm.generate([prompt], params)
    return (time.perf_counter() - start) * 1000


def run_transformers_fp32(plan: Plan) -> dict[str, Any]:
    import torch

    return run_transformers(plan, torch.float32)


def run_transformers_bf16(plan: Plan) -> dict[str, Any]:
    import torch

    return run_transformers(plan, torch.bfloat16)


def run_transformers(plan: Plan, dtype: Any) -> dict[str, Any]:
    import torch

    from sagellm.engines.bench.backends.hf_transformers import load_hf_model
    from sagellm.engines.model.default_model import default_model_path
    from sagellm.engines.model.gguf_loader import open_reader, read_metadata
    from sagellm.engines.tokenizer import Tokenizer

    torch.set_num_threads(plan.threads)
    path = default_model_path()
    tokenizer = Tokenizer.from_gguf_metadata(read_metadata(open_reader(path)), path)
    model = load_hf_model(path, dtype)
    encode = tokenizer.encode
    results: dict[str, Any] = {}

    def generate(prompts: list[list[int]], new_tokens: int) -> float:
        ids = torch.tensor(prompts)
        start = time.perf_counter()
        with torch.inference_mode():
            model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                pad_token_id=2,
            )
        return time.perf_counter() - start

    generate(prompt_ids(encode, 1, plan.prompt_len, offset=99), 4)  # warm-up
    (prompt,) = prompt_ids(encode, 1, plan.prompt_len)
    ttft = generate([prompt], 1)
    total = generate([prompt], plan.new_tokens)
    results["batch1"] = {
        "tokens": plan.new_tokens,
        "e2e_tok_s": plan.new_tokens / total,
        "decode_tok_s": (plan.new_tokens - 1) / max(1e-9, total - ttft),
        "ttft_ms": ttft * 1000,
    }
    for n in plan.concurrency:
        prompts = prompt_ids(encode, n, plan.prompt_len, offset=n)  # equal lengths: padding is free
        elapsed = generate(prompts, plan.new_tokens)
        results[f"concurrent_{n}"] = {
            "tokens": n * plan.new_tokens,
            "tok_s": n * plan.new_tokens / elapsed,
            "seconds": elapsed,
        }
    (prefix,) = prompt_ids(encode, 1, plan.prefix_len, offset=7)
    suffixes = prompt_ids(encode, 2, 16, offset=3)
    results["ttft_cold_ms"] = generate([prefix + suffixes[0]], 1) * 1000
    results["ttft_prefix_hit_ms"] = generate([prefix + suffixes[1]], 1) * 1000  # no prefix cache across calls
    results["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    results["dtype"] = str(dtype).replace("torch.", "")
    return results


def run_llama_server(plan: Plan) -> dict[str, Any]:
    """llama.cpp's own server on the same GGUF: parallel slots, its prompt cache, timed by this client."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    from sagellm.core.ports import ephemeral_port
    from sagellm.engines.bench.served_peers import LLAMA_SERVER_HINT, find_llama_server, llama_server_command
    from sagellm.engines.bench.server_process import running_server
    from sagellm.engines.model.default_model import default_model_path
    from sagellm.engines.model.gguf_loader import open_reader, read_metadata
    from sagellm.engines.tokenizer import Tokenizer

    binary = find_llama_server()
    if binary is None:
        raise SystemExit(f"llama-server not found: {LLAMA_SERVER_HINT}")
    path = default_model_path()
    encode = Tokenizer.from_gguf_metadata(read_metadata(open_reader(path)), path).encode
    slots = max(plan.concurrency)
    command = llama_server_command(binary, path, ephemeral_port(), slots, plan.threads)
    results: dict[str, Any] = {"dtype": "Q4_1 (its own kernels)"}
    with running_server(command) as base_url, httpx.Client(timeout=600) as client:
        root = base_url.removesuffix("/v1")

        def complete(prompt: list[int], new_tokens: int) -> tuple[float, dict[str, Any]]:
            body = {"prompt": prompt, "n_predict": new_tokens, "temperature": 0.0, "top_k": 1, "ignore_eos": True,
                    "cache_prompt": True}  # fmt: skip
            start = time.perf_counter()
            response = client.post(f"{root}/completion", json=body)
            response.raise_for_status()
            return time.perf_counter() - start, response.json()

        complete(prompt_ids(encode, 1, plan.prompt_len, offset=99)[0], 4)  # warm-up
        (prompt,) = prompt_ids(encode, 1, plan.prompt_len)
        ttft, _ = complete(prompt, 1)
        total, answer = complete(prompt_ids(encode, 1, plan.prompt_len, offset=1)[0], plan.new_tokens)
        results["batch1"] = {
            "tokens": plan.new_tokens,
            "e2e_tok_s": plan.new_tokens / total,
            "decode_tok_s": float(answer["timings"]["predicted_per_second"]),
            "ttft_ms": ttft * 1000,
        }
        for n in plan.concurrency:
            prompts = prompt_ids(encode, n, plan.prompt_len, offset=n)
            start = time.perf_counter()
            with ThreadPoolExecutor(n) as pool:
                list(pool.map(lambda p: complete(p, plan.new_tokens), prompts))
            elapsed = time.perf_counter() - start
            results[f"concurrent_{n}"] = {"tokens": n * plan.new_tokens, "tok_s": n * plan.new_tokens / elapsed,
                                          "seconds": elapsed}  # fmt: skip
        (prefix,) = prompt_ids(encode, 1, plan.prefix_len, offset=7)
        suffixes = prompt_ids(encode, 2, 16, offset=3)
        results["ttft_cold_ms"] = complete(prefix + suffixes[0], 1)[0] * 1000
        hit_s, hit = complete(prefix + suffixes[1], 1)  # its prompt cache: the slot keeps the common prefix
        results["ttft_prefix_hit_ms"] = hit_s * 1000
        results["prefix_cached_tokens"] = int(hit.get("tokens_cached", 0) or 0) - int(hit["timings"]["prompt_n"])
    return results  # no peak_rss_mb: the server is another process


WORKERS = {
    "sagellm": run_sagellm,
    "sagellm-w8a8": run_sagellm_w8a8,
    "sagellm-w8a8-kv8": run_sagellm_w8a8_kv8,
    "sagellm-unfused": run_sagellm_unfused,
    "transformers-fp32": run_transformers_fp32,
    "transformers-bf16": run_transformers_bf16,
    "llama-server": run_llama_server,
}


QUICK_SIDES = ["sagellm", "transformers-fp32"]  # CI smoke: the default against the reference peer


def default_sides() -> list[str]:
    """Every side, less transformers at bf16 on CPUs that only emulate bf16 (a strawman there), and
    llama-server where no build is found (said on stderr)."""
    from sagellm.engines.bench.served_peers import LLAMA_SERVER_HINT, find_llama_server
    from sagellm.engines.engine.device import cpu_has_fast_bf16

    sides = [side for side in WORKERS if side != "transformers-bf16" or cpu_has_fast_bf16()]
    if find_llama_server() is None:
        print(f"llama-server left out: not found ({LLAMA_SERVER_HINT})", file=sys.stderr)
        sides.remove("llama-server")
    return sides


# --------------------------------------------------------------------------- reporting
def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b and not (math.isnan(a) or math.isnan(b)) else "n/a"


OURS = (
    ("sagellm", "sageLLM"),
    ("sagellm-w8a8", "sageLLM w8a8"),
    ("sagellm-w8a8-kv8", "sageLLM w8a8 + int8 KV"),
    ("sagellm-unfused", "sageLLM unfused"),
)
PEERS = (
    ("transformers-fp32", "transformers fp32"),
    ("transformers-bf16", "transformers bf16"),
    ("llama-server", "llama-server"),
)


def _cell(number: float, fmt: str) -> str:
    return "-" if math.isnan(number) else format(number, fmt)


def markdown(report: dict[str, Any]) -> str:
    """One column per side; each of our sides gets a ratio column against each peer."""
    results = report["results"]
    ours = [(key, f"{label} ({results[key].get('dtype', '?')})") for key, label in OURS if key in results]
    peers = [(key, label) for key, label in PEERS if key in results]
    pairs = [(o, p) for o, _ in ours for p, _ in peers]
    header = "| metric |" + "".join(f" {label} |" for _, label in ours + peers)
    header += "".join(f" {dict(ours)[o].split(' (')[0]} / {dict(peers)[p]} |" for o, p in pairs)
    lines = [header, "|---|" + "---:|" * (len(ours) + len(peers) + len(pairs))]

    def value(side: str, key: str, field: str | None) -> float:
        entry = results[side].get(key, math.nan)  # missing: not measured for that side (shown as -)
        return float(entry.get(field, math.nan) if field else entry)

    rows: list[tuple[str, str, str | None, str, bool]] = [
        ("batch-1 decode tok/s", "batch1", "decode_tok_s", ".1f", True),
        ("batch-1 end-to-end tok/s", "batch1", "e2e_tok_s", ".1f", True),
    ]
    rows += [
        (f"{n} concurrent, aggregate tok/s", f"concurrent_{n}", "tok_s", ".1f", True)
        for n in report["plan"]["concurrency"]
    ]
    rows += [
        ("TTFT, 1k-token prompt, cold (ms)", "ttft_cold_ms", None, ".0f", False),
        ("TTFT, 1k-token shared prefix, 2nd request (ms)", "ttft_prefix_hit_ms", None, ".0f", False),
        ("peak RSS (MB)", "peak_rss_mb", None, ".0f", False),
    ]
    for label, key, field, fmt, higher_is_better in rows:
        cells = [_cell(value(side, key, field), fmt) for side, _ in ours + peers]
        ratios = [
            ratio(value(o, key, field), value(p, key, field))
            if higher_is_better
            else ratio(value(p, key, field), value(o, key, field))
            for o, p in pairs
        ]
        lines.append(f"| {label} | " + " | ".join(cells + ratios) + " |")
    lines.append("\nRatios: higher is better for sageLLM (TTFT and memory rows: peer / sageLLM).")
    for side, label in ours:
        cold, hit = value(side, "ttft_cold_ms", None), value(side, "ttft_prefix_hit_ms", None)
        lines.append(f"Prefix hit cuts {label}'s TTFT {ratio(cold, hit)}.")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes for a CI smoke run")
    parser.add_argument(
        "--only", action="append", choices=sorted(WORKERS), help="run only this side (repeatable); default: all"
    )
    parser.add_argument("--out", default=str(HERE / "results"), help="output directory")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--plan", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(
            json.dumps(
                WORKERS[args.worker](
                    Plan(**{**json.loads(args.plan), "concurrency": tuple(json.loads(args.plan)["concurrency"])})
                )
            )
        )
        return 0
    plan = Plan.quick() if args.quick else Plan()
    sides = args.only or (QUICK_SIDES if args.quick else default_sides())
    report: dict[str, Any] = {"plan": asdict(plan), "results": {}, "environment": environment()}
    for side in sides:
        print(f"running {side} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, __file__, "--worker", side, "--plan", json.dumps(asdict(plan))],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            return 1
        report["results"][side] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"  {side} done in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "engine_bench.json").write_text(json.dumps(report, indent=2))
    table = markdown(report)
    (out / "engine_bench.md").write_text(table)
    print(table)
    return 0


def environment() -> dict[str, Any]:
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
    }


if __name__ == "__main__":
    sys.exit(main())
