"""Per-step index tensors that tell attention where each token's KV lives.

Built once per engine step and shared by all layers, so the per-layer work
is pure tensor indexing. Tokens of all scheduled sequences are flattened
into one batch of ``T`` rows; a token at position ``p`` of a sequence whose
block table is ``[b0, b1, ...]`` writes its KV into slot::

    slot = block_table[p // block_size] * block_size + p % block_size

Single-token sequences (decodes) are attended together as one padded batch;
multi-token chunks (prefills) are attended one by one with a causal mask
that is offset by the tokens already cached.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(slots=True)
class DecodeGroup:
    token_idx: torch.Tensor  # [B] rows of the flat batch holding one query each
    slot_idx: torch.Tensor  # [B, L] KV slots of each sequence's context, padded
    mask: torch.Tensor | None  # [B, 1, 1, L] True = attend; None when no padding


@dataclass(slots=True)
class PrefillChunk:
    begin: int  # rows [begin, end) of the flat batch
    end: int
    slot_idx: torch.Tensor | None  # [context_len] when earlier tokens are cached, else None
    mask: torch.Tensor | None  # [n, context_len] causal mask offset by the cached tokens


@dataclass(slots=True)
class AttentionMetadata:
    slot_mapping: torch.Tensor  # [T] where each new token's KV is written
    decode: DecodeGroup | None
    prefills: list[PrefillChunk]
