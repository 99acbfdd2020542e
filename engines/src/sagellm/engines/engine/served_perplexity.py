"""Perplexity the way ``llama-perplexity`` computes it, measured through the engine as it serves.

llama.cpp's tool cuts the token stream into chunks of ``n_ctx`` tokens and
scores the second half of each chunk, the first half being context (the
logits of positions ``n_ctx/2 .. n_ctx-2`` against the tokens after them). Here
each chunk is one engine request: its first half is the prompt (prefilled
as served), its second half is forced token by token through decode steps,
so every scored row comes out of the serving path -- the 4-bit decode
kernels, the int8 head, fused kernels, the configured KV cache dtype and
quantizer. Same text, same chunks, same scored positions: the two numbers
are comparable, and differ only by what the two engines compute.

The forcing replaces the engine's sampler for the run (the one thing that
would pick another token); it also counts how often the engine's own greedy
choice was the forced token.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from sagellm.core.types import SamplingParams, SequenceState
from sagellm.engines.engine.llm_engine import LLMEngine
from sagellm.engines.runtime.sampler import SampledToken, Sampler


@dataclass(frozen=True, slots=True)
class ServedPerplexity:
    perplexity: float
    num_chunks: int
    num_scored: int
    top1_agreement: float  # share of scored tokens that were also the engine's greedy choice


class ForcingSampler(Sampler):
    """Returns each request's next forced token and scores it; the engine's logits stay untouched."""

    def __init__(self, continuations: dict[str, Sequence[int]]) -> None:
        super().__init__()
        self.continuations = continuations
        self.nll = 0.0
        self.num_scored = 0
        self.num_top1 = 0

    def sample(
        self, logits: torch.Tensor, seqs: Sequence[SequenceState], masks: Sequence[torch.Tensor | None] = ()
    ) -> list[SampledToken]:
        """``masks`` are ignored: scoring reads the model's own distribution (no request here has a grammar)."""
        targets = [self.continuations[seq.request_id][seq.num_output_tokens] for seq in seqs]
        target_index = torch.tensor(targets, device=logits.device).unsqueeze(1)
        log_probs = torch.log_softmax(logits.float(), dim=-1)
        self.nll -= float(log_probs.gather(1, target_index).sum())
        self.num_top1 += int((logits.argmax(dim=-1) == target_index.squeeze(1)).sum())
        self.num_scored += len(seqs)
        return [SampledToken(token) for token in targets]


def chunks_of(token_ids: Sequence[int], n_ctx: int, max_chunks: int | None = None) -> list[list[int]]:
    """llama-perplexity's chunks: consecutive, non-overlapping, ``n_ctx`` tokens each, the remainder dropped."""
    count = len(token_ids) // n_ctx
    if max_chunks is not None:
        count = min(count, max_chunks)
    if count == 0:
        raise ValueError(f"perplexity with n_ctx={n_ctx} needs at least {n_ctx} tokens, got {len(token_ids)}")
    return [list(token_ids[i * n_ctx : (i + 1) * n_ctx]) for i in range(count)]


def served_perplexity(
    engine: LLMEngine, token_ids: Sequence[int], n_ctx: int, max_chunks: int | None = None, concurrency: int = 1
) -> ServedPerplexity:
    """Score the second half of every chunk; ``concurrency`` chunks are served at a time (decode batch size)."""
    chunks = chunks_of(token_ids, n_ctx, max_chunks)
    first = n_ctx // 2  # llama-perplexity's first scoring position: its logits predict token first + 1
    original = engine.sampler
    forcing = ForcingSampler({})
    engine.sampler = forcing
    try:
        for start in range(0, len(chunks), concurrency):
            for offset, chunk in enumerate(chunks[start : start + concurrency]):
                request_id = f"ppl-{start + offset}"
                forcing.continuations[request_id] = chunk[first + 1 :]
                sampling = SamplingParams(max_tokens=n_ctx - first - 1, temperature=0.0, ignore_eos=True)
                engine.add_request(chunk[: first + 1], sampling, request_id)
            while engine.has_unfinished():
                engine.step()
    finally:
        engine.sampler = original
    return ServedPerplexity(
        perplexity=math.exp(forcing.nll / forcing.num_scored),
        num_chunks=len(chunks),
        num_scored=forcing.num_scored,
        top1_agreement=forcing.num_top1 / forcing.num_scored,
    )
