"""Sliding-window attention: a step's metadata narrowed so each query sees only its last ``window`` positions.

Mistral (every layer) and Gemma 2/3 (some layers) attend, at position
``p``, to keys ``p - window + 1 .. p`` — transformers' rule
``q_idx - kv_idx < window``. The pool still holds the whole context (full
layers of the same sequence need it, and Mistral's memory saving is not
worth a second block layout here); windowed layers only mask what lies
before their window, which is exactly what the model computes.

The narrowed metadata is built once per step and window, on the first
windowed layer, and shared by the rest. It drops what fused kernels need
(``context_lens`` and the batched prefill group) wherever the window cuts
into a context, since those kernels attend to whole contexts; where no
context reaches past the window the original groups are kept, fused
kernels included.
"""

from __future__ import annotations

import dataclasses

import torch

from sagellm.engines.model.attention_metadata import AttentionMetadata, DecodeGroup, PrefillChunk


def windowed(meta: AttentionMetadata, window: int, block_size: int) -> AttentionMetadata:
    """``meta`` for a layer with a ``window``-token attention window (cached on ``meta``)."""
    cached = meta.windowed.get(window)
    if cached is None:
        cached = _narrowed(meta, window, block_size)
        meta.windowed[window] = cached
    return cached


def _narrowed(meta: AttentionMetadata, window: int, block_size: int) -> AttentionMetadata:
    device = meta.slot_mapping.device
    decode = None if meta.decode is None else _windowed_decode(meta.decode, window, block_size)
    prefills = [_windowed_chunk(chunk, window, device) for chunk in meta.prefills]
    unchanged = all(new is old for new, old in zip(prefills, meta.prefills))
    return dataclasses.replace(
        meta,
        decode=decode,
        prefills=prefills,
        prefill_group=meta.prefill_group if unchanged else None,
        windowed={},
    )


def _windowed_decode(group: DecodeGroup, window: int, block_size: int) -> DecodeGroup:
    lengths = group.context_lens
    if lengths is None:
        raise ValueError("windowed decode needs each row's context length")
    if int(lengths.max()) <= window:
        return group
    width = group.block_table.shape[1] * block_size
    positions = torch.arange(width, device=lengths.device).unsqueeze(0)
    before = positions < (lengths - window).unsqueeze(1)  # [B, width]: older than the window
    bias = torch.zeros(before.shape, dtype=torch.float32, device=lengths.device)
    if group.mask_bias is not None:
        bias += group.mask_bias.view(before.shape)
    bias.masked_fill_(before, float("-inf"))
    return DecodeGroup(
        token_idx=group.token_idx,
        block_table=group.block_table,
        mask_bias=bias.view(len(lengths), 1, 1, width),
        context_lens=None,  # fused kernels attend to whole contexts: keep them off this group
    )


def _windowed_chunk(chunk: PrefillChunk, window: int, device: torch.device) -> PrefillChunk:
    if chunk.context_len <= window:
        return chunk
    num_queries = chunk.end - chunk.begin
    query_pos = torch.arange(chunk.context_len - num_queries, chunk.context_len, device=device).unsqueeze(1)
    if chunk.block_table is None:  # the chunk is its whole context: keys are its own rows
        key_pos = query_pos.view(1, -1)
    else:
        key_pos = torch.arange(chunk.context_len, device=device).unsqueeze(0)
    mask = (key_pos <= query_pos) & (query_pos - key_pos < window)
    return dataclasses.replace(chunk, mask=mask)
