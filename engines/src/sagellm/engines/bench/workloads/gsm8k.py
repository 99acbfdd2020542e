"""GSM8K grade-school maths questions, one chat request each, answered step by step.

Real questions of natural length (40-200 tokens); ``output_len`` caps the
reasoning. The reference answers stay in the data for accuracy checks by
modules that change outputs (quantization, speculative decoding, CoT).
"""

from __future__ import annotations

from sagellm.engines.bench.load_pattern import LoadPattern
from sagellm.engines.bench.request import BenchRequest
from sagellm.engines.bench.tokenizer_source import TokenizerLike
from sagellm.engines.bench.workloads.base import RunSpec, WorkloadOptions
from sagellm.engines.data.datasets import load_gsm8k

INSTRUCTION = "Solve the problem. Think step by step, then give the final answer after '####'."


def build(tokenizer: TokenizerLike, options: WorkloadOptions, name: str = "gsm8k") -> RunSpec:
    items = load_gsm8k(options.data_path)
    requests = [
        BenchRequest(
            request_id=f"{name}-{i}",
            max_tokens=options.output_len,
            messages=(
                {"role": "user", "content": f"{INSTRUCTION}\n\n{items[(options.seed + i) % len(items)].question}"},
            ),
            tag="math",
        )
        for i in range(options.num_requests)
    ]
    shape = {"workload": "gsm8k", "num_requests": options.num_requests, "output_len": options.output_len}
    return RunSpec(name, requests, LoadPattern(request_rate=float("inf")), shape, "GSM8K maths")
