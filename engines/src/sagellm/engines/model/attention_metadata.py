"""Per-step index tensors that tell attention where each token's KV lives.

Built once per engine step and shared by all layers, so the per-layer work
is pure tensor indexing. Tokens of all scheduled sequences are flattened
into one batch of ``T`` rows; a token at position ``p`` of a sequence whose
block table is ``[b0, b1, ...]`` writes its KV into slot::

    slot = block_table[p // block_size] * block_size + p % block_size

Attention reads a sequence's context back **block by block**: one
``index_select`` of whole blocks (``block_size * heads * head_dim``
contiguous values each) per layer, not one gather per token slot — the
copy is the same size but runs as a few large memcpys instead of
thousands of small ones::

    block table  [7, 2, 9]          (3 blocks, block_size 4, 10 tokens)
    gathered     |b7 0..3|b2 4..7|b9 8..11|   -> keys of positions 0..11
    mask bias    [0 0 0 0 0 0 0 0 0 0 -inf -inf]   (positions 10, 11 unused)

Single-token sequences (decodes) are attended together as one padded batch
(block tables padded with block 0, hidden by the mask bias); multi-token
chunks (prefills) are attended one by one with a causal mask that is offset
by the tokens already cached.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(slots=True)
class DecodeGroup:
    token_idx: torch.Tensor  # [B] rows of the flat batch holding one query each
    block_table: torch.Tensor  # [B, num_blocks] each sequence's blocks, padded with block 0
    mask_bias: torch.Tensor | None  # [B, 1, 1, num_blocks * block_size] float32, -inf past a context; None: no padding
    context_lens: torch.Tensor | None = None  # [B] int64 tokens each query attends to (fused kernels read no padding)


@dataclass(slots=True)
class PrefillChunk:
    begin: int  # rows [begin, end) of the flat batch
    end: int
    block_table: torch.Tensor | None  # [num_blocks] when earlier tokens are cached, else None
    context_len: int  # tokens of context the chunk attends to (cached + its own)
    mask: torch.Tensor | None  # [n, context_len] causal mask offset by the cached tokens


@dataclass(slots=True)
class PrefillGroup:
    """Every prefill chunk of a step at once, for a fused kernel that attends them in one call."""

    chunk_rows: torch.Tensor  # [C, 2] int64 rows [begin, end) of each chunk in the flat batch
    context_lens: torch.Tensor  # [C] int64 tokens of context of each (cached + its own)
    block_table: torch.Tensor  # [C, num_blocks] each chunk's blocks, padded with block 0


@dataclass(slots=True)
class BlockWrites:
    """Where the step's new tokens land, by block (int8 caches rescale whole blocks; see kv_int8.py)."""

    block_ids: torch.Tensor  # [U] distinct blocks written this step
    inverse: torch.Tensor  # [T] index into block_ids of each new token
    offsets: torch.Tensor  # [T] position of each new token in its block
    one_per_block: bool  # True: token t is the only one written into block_ids[t] (pure decode)


@dataclass(slots=True)
class AttentionMetadata:
    slot_mapping: torch.Tensor  # [T] where each new token's KV is written
    decode: DecodeGroup | None
    prefills: list[PrefillChunk]
    block_writes: BlockWrites | None = None  # int8 caches only: filled by the first layer, reused by the rest
    prefill_group: PrefillGroup | None = None  # the prefills again, batched (None when there are none)
    windowed: dict[int, AttentionMetadata] = field(default_factory=dict)  # by window (see attention_window.py)
