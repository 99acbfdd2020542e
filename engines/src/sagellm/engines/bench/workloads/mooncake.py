"""Mooncake trace replay: arrivals, lengths and shared prefixes from a production trace.

Each row lists ``hash_ids``, one per 512-token block of its prompt; equal
ids mean equal blocks. Every id becomes a deterministic block of token ids
(:func:`~sagellm.engines.bench.token_fit.block_token_ids`), the blocks are
concatenated and ``input_length`` trims the last one:

    hash_ids  [ 7 ][ 8 ][ 9 ]        input_length = 2 x 512 + 100
    tokens    |512 |512 |100|        (block 9 cut to 100 tokens)
    another   [ 7 ][ 8 ][ 42 ]  --> shares 1,024 tokens of prefix with the first

``length_scale`` shrinks blocks and lengths together (block = 512 x scale
tokens, rounded up so a row's blocks always cover its scaled length), so
shared prefixes stay shared; timestamps (ms) give the arrival
times, stretched by ``time_scale``.
"""

from __future__ import annotations

import math

from sagellm.engines.bench.load_pattern import LoadPattern, scale_arrivals
from sagellm.engines.bench.request import BenchRequest
from sagellm.engines.bench.token_fit import block_token_ids
from sagellm.engines.bench.tokenizer_source import TokenizerLike
from sagellm.engines.bench.workloads.base import RunSpec, WorkloadOptions
from sagellm.engines.data.datasets import load_mooncake

BLOCK_TOKENS = 512  # the trace's block size: one hash id per 512 prompt tokens


def build(tokenizer: TokenizerLike, options: WorkloadOptions, name: str = "mooncake") -> RunSpec:
    rows = load_mooncake(options.data_path)[: options.num_requests]
    block = max(1, math.ceil(BLOCK_TOKENS * options.length_scale))
    arrivals = scale_arrivals([r.timestamp_ms / 1000.0 for r in rows], options.time_scale)
    requests = []
    for i, (row, arrival) in enumerate(zip(rows, arrivals)):
        ids = prompt_from_hash_ids(
            row.hash_ids, options.scaled(row.input_length), block, tokenizer.vocab_size, options.seed
        )
        requests.append(
            BenchRequest(
                request_id=f"{name}-{i}",
                max_tokens=options.scaled(row.output_length),
                prompt_token_ids=tuple(ids),
                arrival_s=arrival,
            )
        )
    shape = {
        "workload": "mooncake",
        "num_requests": len(requests),
        "length_scale": options.length_scale,
        "time_scale": options.time_scale,
        "block_tokens": block,
    }
    return RunSpec(name, requests, LoadPattern(), shape, "Mooncake trace replay")


def prompt_from_hash_ids(
    hash_ids: tuple[int, ...], input_length: int, block_tokens: int, vocab_size: int, seed: int = 0
) -> list[int]:
    """The prompt a trace row describes: its hash blocks in order, cut to ``input_length``."""
    needed = -(-input_length // block_tokens)
    ids: list[int] = []
    for hash_id in hash_ids[:needed]:
        ids.extend(block_token_ids(hash_id, block_tokens, vocab_size, seed))
    return ids[:input_length] or block_token_ids(0, 1, vocab_size, seed)
