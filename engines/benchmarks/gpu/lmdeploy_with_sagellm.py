"""Serve one model through LMDeploy's PyTorch engine with and without sageLLM's modules; compare speed and text.

NOT RUN YET: written without a GPU (LMDeploy's PyTorch engine accepts only
cuda, ascend, maca and camb devices). It has not been executed, so its
numbers and even its LMDeploy calls are unverified; run it on a GPU box and
fix what breaks before quoting anything from it.

Setup on the GPU box (LMDeploy 0.11.0 with sageLLM's patches, sageLLM importable):

    pip install lmdeploy==0.11.0
    third_party/patches/lmdeploy/apply_patches.sh "$(python -c 'import lmdeploy, os; print(os.path.dirname(os.path.dirname(lmdeploy.__file__)))')"
    pip install -c constraints.txt -e sageLLM-core -e direction_2_kv_scheduling/prefix_cache \
        -e direction_2_kv_scheduling/eviction_policy -e direction_2_kv_scheduling/scheduler_ir -e engines
    python engines/benchmarks/gpu/lmdeploy_with_sagellm.py Qwen/Qwen2.5-0.5B-Instruct --prompts 64

Two engines are built one after the other on the same GPU: LMDeploy as is,
then LMDeploy with ``sagellm.engines.lmdeploy.install`` (FIFO IR builder,
hash-chain prefix index, LRU policy; ``--eviction``/``--scheduler`` swap
them). Both run the same greedy prompts (a shared system prefix, so the
prefix index has work). Printed as JSON: output tokens/s of each, the
share of identical greedy outputs (FIFO over LMDeploy's own FIFO order
should give 1.0 up to batch-dependent numerics), and the adapter's
counters (prefix blocks proposed/stored, eviction agreement).
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from typing import Any

SYSTEM = "You are a careful assistant. Answer briefly and precisely. " * 8


def prompts(n: int) -> list[str]:
    """``n`` prompts sharing a long prefix (prefix reuse) with distinct questions."""
    return [f"{SYSTEM}\nQuestion {i}: what is {i} times {i + 3}? Explain in one sentence." for i in range(n)]


def run(model: str, texts: list[str], max_new_tokens: int, sagellm: dict[str, Any] | None) -> dict[str, Any]:
    """One engine's pass over ``texts``: output texts, tokens/s and, with sageLLM, the adapter's counters."""
    from lmdeploy import GenerationConfig, PytorchEngineConfig, pipeline

    pipe = pipeline(model, backend_config=PytorchEngineConfig(enable_prefix_caching=True, cache_max_entry_count=0.5))
    plugins = None
    if sagellm is not None:
        from sagellm.core.config import load_config
        from sagellm.engines.lmdeploy import install

        plugins = install(pipe.engine, load_config(**sagellm))
    gen = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False)
    pipe(texts[:2], gen_config=gen)  # warm-up (kernels, graphs)
    start = time.perf_counter()
    outputs = pipe(texts, gen_config=gen)
    seconds = time.perf_counter() - start
    tokens = sum(out.generate_token_len for out in outputs)
    result: dict[str, Any] = {"seconds": seconds, "output_tokens": tokens, "tokens_per_s": tokens / seconds}
    result["texts"] = [out.text for out in outputs]
    if plugins is not None and plugins.prefix_hook is not None:
        hook = plugins.prefix_hook
        result["prefix_blocks_proposed"] = hook.num_proposed_blocks
        result["prefix_blocks_stored"] = hook.num_stored_blocks
        if hook.feed is not None:
            result["eviction_agreement"] = hook.feed.stats.agreement
    pipe.close()
    del pipe
    gc.collect()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a HF model id or local path LMDeploy's PyTorch engine supports")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--scheduler", default="fifo", help="scheduler_ir.implementation")
    parser.add_argument("--prefix-index", default="hash_chain", help="prefix_cache.implementation")
    parser.add_argument("--eviction", default="lru", help="eviction_policy.implementation")
    args = parser.parse_args()
    sagellm = {
        "scheduler_ir": {
            "implementation": args.scheduler,
            "enable_chunked_prefill": False,  # LMDeploy prefills whole prompts
            "max_num_seqs": 256,
            "max_num_batched_tokens": 16384,
        },
        "prefix_cache": {"implementation": args.prefix_index},
        "eviction_policy": {"implementation": args.eviction},
    }
    texts = prompts(args.prompts)
    plain = run(args.model, texts, args.max_new_tokens, None)
    plugged = run(args.model, texts, args.max_new_tokens, sagellm)
    same = sum(a == b for a, b in zip(plain.pop("texts"), plugged.pop("texts"), strict=True))
    print(
        json.dumps(
            {
                "model": args.model,
                "lmdeploy": plain,
                "lmdeploy_with_sagellm": plugged,
                "speedup": plugged["tokens_per_s"] / plain["tokens_per_s"],
                "identical_outputs": same / len(texts),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
