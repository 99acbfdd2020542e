"""Synthetic fixed-length requests: random token ids, exact input and output lengths.

The ids are uniform over the ordinary vocabulary (vLLM's "random" data
set): no two prompts share a prefix, so this measures the engine without
any help from the prefix cache.
"""

from __future__ import annotations

import numpy as np

from sagellm.engines.bench.load_pattern import LoadPattern
from sagellm.engines.bench.request import BenchRequest
from sagellm.engines.bench.token_fit import random_token_ids
from sagellm.engines.bench.tokenizer_source import TokenizerLike
from sagellm.engines.bench.workloads.base import RunSpec, WorkloadOptions


def build(tokenizer: TokenizerLike, options: WorkloadOptions, name: str = "synthetic") -> RunSpec:
    rng = np.random.default_rng(options.seed)
    requests = [
        BenchRequest(
            request_id=f"{name}-{i}",
            max_tokens=options.output_len,
            prompt_token_ids=tuple(random_token_ids(rng, options.input_len, tokenizer.vocab_size)),
        )
        for i in range(options.num_requests)
    ]
    shape = {
        "workload": "synthetic",
        "num_requests": options.num_requests,
        "input_len": options.input_len,
        "output_len": options.output_len,
    }
    return RunSpec(name, requests, LoadPattern(request_rate=float("inf")), shape, "synthetic fixed-length")
