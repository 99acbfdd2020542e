"""Perplexity of a model on a token stream: the quality check for dtypes and kernels.

Each window is scored from scratch, fed to the model in chunks of
``chunk_size`` tokens through the same paged-attention path the engine
uses (a private KV buffer, identity block table). Small chunks run every
linear layer on few rows, i.e. through the kernels decode uses (4-bit
weights included), so the number measures what serving computes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from sagellm.core.types import Request, SequenceState
from sagellm.engines.model.llama import LlamaForCausalLM
from sagellm.engines.runtime.input_batch import ChunkWork, build_input_batch

BLOCK_SIZE = 16


@torch.inference_mode()
def perplexity(model: LlamaForCausalLM, token_ids: Sequence[int], window: int = 256, chunk_size: int = 256) -> float:
    """exp(mean negative log-likelihood) of every token after the first of each window."""
    total_nll, count = 0.0, 0
    for begin in range(0, len(token_ids) - 1, window):
        piece = list(token_ids[begin : begin + window])
        if len(piece) < 2:
            break
        nll = _window_nll(model, piece, chunk_size)
        total_nll += float(nll.sum())
        count += nll.numel()
    if count == 0:
        raise ValueError("perplexity needs at least two tokens")
    return math.exp(total_nll / count)


def _window_nll(model: LlamaForCausalLM, token_ids: list[int], chunk_size: int) -> torch.Tensor:
    targets = torch.tensor(token_ids[1:], device=model.embed.device)
    return F.cross_entropy(window_logits(model, token_ids, chunk_size)[:-1], targets, reduction="none")


def window_logits(
    model: LlamaForCausalLM, token_ids: Sequence[int], chunk_size: int, layers: Sequence[int] | None = None
) -> torch.Tensor:
    """Logits (float32) of every token, fed in chunks through a private KV; ``layers``: only those layers run."""
    config, device = model.config, model.embed.device
    num_blocks = -(-len(token_ids) // BLOCK_SIZE)
    shape = (num_blocks, BLOCK_SIZE, config.num_kv_heads, config.head_dim)
    num_run = config.num_layers if layers is None else len(layers)
    caches = [(model.embed.new_zeros(shape), model.embed.new_zeros(shape)) for _ in range(num_run)]
    seq = SequenceState(Request("perplexity", tuple(token_ids)))
    seq.block_ids = list(range(num_blocks))
    logits = []
    with torch.inference_mode():
        for start in range(0, len(token_ids), chunk_size):
            work = ChunkWork(seq, start, min(chunk_size, len(token_ids) - start))
            batch = build_input_batch([work], BLOCK_SIZE, device)
            every_row = torch.arange(work.num_tokens, device=device)
            logits.append(model(batch.input_ids, batch.positions, batch.meta, caches, every_row, layers))
    return torch.cat(logits)
