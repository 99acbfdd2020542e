"""A real GGUF file through sageLLM and through transformers' GGUF loader: greedy agreement in float32.

Both sides dequantize the same file to float32, so on a model without
near-ties their greedy continuations should be identical; the first
position where they part (if any) is reported per prompt. This is the
outside reference for architectures llama.cpp is not built for here (the
llama.cpp comparison is ``bench_llama_cpp_reference.py``).

Usage::

    python engines/benchmarks/gguf_vs_transformers.py --model gemma-3-270m-q4_k_m.gguf
    python engines/benchmarks/gguf_vs_transformers.py --model FILE --prompts 8 --new-tokens 64

Needs transformers with GGUF support for the file's architecture (and the
``gguf`` package). Writes ``results/gguf_vs_transformers.json`` and ``.md``
(or ``--out DIR``). Not part of ``nox -s bench-engines``: it needs a file
the repository does not ship.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch

from sagellm.core.types import SamplingParams
from sagellm.engines import LLM
from sagellm.engines.bench.environment import cpu_model_name
from sagellm.engines.bench.report import write_json_and_markdown

HERE = Path(__file__).resolve().parent
TEXT = HERE / "data" / "tinyshakespeare_head.txt"


def prompts_from_text(llm: LLM, count: int, length: int) -> list[list[int]]:
    ids = llm.tokenizer.encode(TEXT.read_text(), add_special_tokens=False)
    stride = (len(ids) - length) // count
    bos = [] if llm.engine.model_config.bos_token_id is None else [llm.engine.model_config.bos_token_id]
    return [bos + ids[i * stride : i * stride + length] for i in range(count)]


def transformers_greedy(path: Path, prompts: list[list[int]], new_tokens: int) -> tuple[list[list[int]], float]:
    from transformers import AutoModelForCausalLM

    started = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    load_s = time.perf_counter() - started
    outputs = []
    with torch.inference_mode():
        for prompt in prompts:
            ids = torch.tensor([prompt])
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens, do_sample=False)
            outputs.append(out[0, len(prompt) :].tolist())
    return outputs, load_s


def first_difference(a: list[int], b: list[int]) -> int | None:
    """Index of the first differing token; None when the shorter is a prefix of the longer."""
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a GGUF file")
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=40)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)

    llm = LLM(model={"path": str(args.model), "dtype": "float32"}, show_progress=False)
    prompts = prompts_from_text(llm, args.prompts, args.prompt_tokens)
    params = SamplingParams(temperature=0.0, max_tokens=args.new_tokens, ignore_eos=True)
    ours = [list(o.token_ids) for o in llm.generate(prompts, params)]
    del llm
    theirs, load_s = transformers_greedy(args.model, prompts, args.new_tokens)
    rows: list[dict[str, Any]] = []
    for i, (a, b) in enumerate(zip(ours, theirs)):
        rows.append({"prompt": i, "identical": a == b, "first_difference": first_difference(a, b), "tokens": len(a)})
    report = {
        "model": str(args.model),
        "cpu": cpu_model_name(),
        "new_tokens": args.new_tokens,
        "identical": sum(r["identical"] for r in rows),
        "prompts": rows,
        "transformers_load_s": round(load_s, 1),
    }
    lines = [
        f"# {args.model.name}: sageLLM vs transformers (float32, greedy), {cpu_model_name()}",
        "",
        "| prompt | identical | first difference |",
        "|---:|:---:|---:|",
        *(f"| {r['prompt']} | {'yes' if r['identical'] else 'no'} | {r['first_difference'] or '-'} |" for r in rows),
        "",
        f"{report['identical']} of {len(rows)} continuations of {args.new_tokens} tokens identical.",
    ]
    write_json_and_markdown(report, "\n".join(lines) + "\n", args.out, "gguf_vs_transformers")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
