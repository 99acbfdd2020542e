"""Azure LLM inference trace replay: real arrival times and length pairs, synthetic tokens.

The trace records when each request came and how many tokens went in and
out (``ContextTokens``, ``GeneratedTokens``), not the text, so prompts are
random ids of the recorded length: arrivals and length mix are what it
tests, not prefix reuse. ``length_scale`` and ``time_scale`` as for Mooncake.
"""

from __future__ import annotations

import numpy as np

from sagellm.engines.bench.load_pattern import LoadPattern, scale_arrivals
from sagellm.engines.bench.request import BenchRequest
from sagellm.engines.bench.token_fit import random_token_ids
from sagellm.engines.bench.tokenizer_source import TokenizerLike
from sagellm.engines.bench.workloads.base import RunSpec, WorkloadOptions
from sagellm.engines.data.datasets import load_azure


def build(tokenizer: TokenizerLike, options: WorkloadOptions, name: str = "azure") -> RunSpec:
    rows = load_azure(options.data_path)[: options.num_requests]
    rng = np.random.default_rng(options.seed)
    arrivals = scale_arrivals([r.arrival_s for r in rows], options.time_scale)
    requests = [
        BenchRequest(
            request_id=f"{name}-{i}",
            max_tokens=options.scaled(row.generated_tokens),
            prompt_token_ids=tuple(random_token_ids(rng, options.scaled(row.context_tokens), tokenizer.vocab_size)),
            arrival_s=arrival,
        )
        for i, (row, arrival) in enumerate(zip(rows, arrivals))
    ]
    shape = {
        "workload": "azure",
        "num_requests": len(requests),
        "length_scale": options.length_scale,
        "time_scale": options.time_scale,
    }
    return RunSpec(name, requests, LoadPattern(), shape, "Azure trace replay")
