"""MT-Bench multi-turn chat: each question is a two-turn conversation.

Turn 2 is sent once turn 1 is answered, with turn 1 and the model's answer
in front of it (see :mod:`sagellm.engines.bench.prompt_resolver`), so it
shares turn 1's whole prompt as a prefix -- the case prefix caching is for.
Prompt lengths are the questions' own; ``output_len`` caps each answer.
"""

from __future__ import annotations

from sagellm.engines.bench.load_pattern import LoadPattern
from sagellm.engines.bench.request import BenchRequest
from sagellm.engines.bench.tokenizer_source import TokenizerLike
from sagellm.engines.bench.workloads.base import RunSpec, WorkloadOptions
from sagellm.engines.data.datasets import load_mt_bench


def build(tokenizer: TokenizerLike, options: WorkloadOptions, name: str = "mt-bench") -> RunSpec:
    """``num_requests`` conversations (cycling through the 80 questions), each turn a request."""
    questions = load_mt_bench(options.data_path)
    requests: list[BenchRequest] = []
    for i in range(options.num_requests):
        question = questions[(options.seed + i) % len(questions)]
        previous: str | None = None
        for turn, text in enumerate(question.turns):
            request_id = f"{name}-{i}-t{turn + 1}"
            requests.append(
                BenchRequest(
                    request_id=request_id,
                    max_tokens=options.output_len,
                    messages=({"role": "user", "content": text},),
                    follows=previous,
                    tag=question.category,
                )
            )
            previous = request_id
    shape = {
        "workload": "mt-bench",
        "num_conversations": options.num_requests,
        "num_requests": len(requests),
        "output_len": options.output_len,
    }
    return RunSpec(name, requests, LoadPattern(concurrency=min(4, options.num_requests)), shape, "MT-Bench chat")
