"""Decode throughput of the engine on a CUDA device (see README.md here): batch 1, 16 and 64.

python3 engines/benchmarks/gpu/gpu_speed.py MODEL.gguf
"""

from __future__ import annotations

import sys
import time

import torch

from sagellm.core.types import SamplingParams
from sagellm.engines import LLM


def main(model: str) -> None:
    llm = LLM(model, show_progress=False)
    print("device", llm.engine.runner.device, "dtype", llm.engine.runner.model.dtype, torch.cuda.get_device_name())
    prompt = list(range(1000, 1128))
    greedy = SamplingParams(max_tokens=128, temperature=0.0, ignore_eos=True)
    for batch in (1, 16, 64):
        llm.generate([prompt], SamplingParams(max_tokens=4))  # warm-up
        torch.cuda.synchronize()
        start = time.perf_counter()
        outs = llm.generate([[token + k for token in prompt] for k in range(batch)], greedy)
        torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        tokens = sum(len(o.token_ids) for o in outs)
        print(f"n={batch}: {tokens / elapsed:.0f} tok/s ({elapsed:.2f}s)")


if __name__ == "__main__":
    main(sys.argv[1])
