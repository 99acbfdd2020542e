"""Flatten one step's scheduled chunks into the tensors the model consumes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from sagellm.core.types import SequenceState
from sagellm.engines.model.attention_metadata import AttentionMetadata, DecodeGroup, PrefillChunk


@dataclass(frozen=True, slots=True)
class ChunkWork:
    """A chunk resolved against its sequence: which tokens, which blocks."""

    seq: SequenceState
    start: int
    num_tokens: int

    @property
    def end(self) -> int:
        return self.start + self.num_tokens

    @property
    def samples(self) -> bool:
        """A chunk that reaches the last known token yields the next token."""
        return self.end == self.seq.num_tokens


@dataclass(slots=True)
class InputBatch:
    input_ids: torch.Tensor  # [T]
    positions: torch.Tensor  # [T]
    meta: AttentionMetadata
    logits_idx: torch.Tensor  # [S] rows whose logits are sampled
    sampled: list[SequenceState]  # the S sequences, in logits order


def slots_of(block_ids: Sequence[int], start: int, end: int, block_size: int) -> list[int]:
    return [block_ids[p // block_size] * block_size + p % block_size for p in range(start, end)]


def build_input_batch(works: Sequence[ChunkWork], block_size: int, device: torch.device) -> InputBatch:
    input_ids: list[int] = []
    positions: list[int] = []
    slot_mapping: list[int] = []
    logits_rows: list[int] = []
    sampled: list[SequenceState] = []
    decode_rows: list[int] = []
    decode_works: list[ChunkWork] = []
    prefills: list[PrefillChunk] = []
    for work in works:
        seq, begin = work.seq, len(input_ids)
        input_ids.extend(seq.token_ids[work.start : work.end])
        positions.extend(range(work.start, work.end))
        slot_mapping.extend(slots_of(seq.block_ids, work.start, work.end, block_size))
        if work.num_tokens == 1:
            decode_rows.append(begin)
            decode_works.append(work)
        else:
            prefills.append(_prefill_chunk(work, begin, block_size, device))
        if work.samples:
            logits_rows.append(len(input_ids) - 1)
            sampled.append(seq)
    meta = AttentionMetadata(
        slot_mapping=torch.tensor(slot_mapping, dtype=torch.long, device=device),
        decode=_decode_group(decode_rows, decode_works, block_size, device) if decode_rows else None,
        prefills=prefills,
    )
    return InputBatch(
        input_ids=torch.tensor(input_ids, dtype=torch.long, device=device),
        positions=torch.tensor(positions, dtype=torch.long, device=device),
        meta=meta,
        logits_idx=torch.tensor(logits_rows, dtype=torch.long, device=device),
        sampled=sampled,
    )


def _prefill_chunk(work: ChunkWork, begin: int, block_size: int, device: torch.device) -> PrefillChunk:
    end = begin + work.num_tokens
    if work.start == 0:
        return PrefillChunk(begin, end, slot_idx=None, mask=None)
    context = context_slots([work], block_size, device)[0]
    query_pos = torch.arange(work.start, work.end, device=device).unsqueeze(1)
    key_pos = torch.arange(work.end, device=device).unsqueeze(0)
    return PrefillChunk(begin, end, slot_idx=context, mask=key_pos <= query_pos)


def context_slots(works: Sequence[ChunkWork], block_size: int, device: torch.device) -> torch.Tensor:
    """[B, longest context] KV slots of each chunk's whole context, from padded block tables.

    Vectorised: Python touches one entry per block, not per token. Padding
    points at block 0, a valid slot that the attention mask hides.
    """
    longest = max(w.end for w in works)
    num_blocks = -(-longest // block_size)
    tables = [w.seq.block_ids[:num_blocks] + [0] * (num_blocks - len(w.seq.block_ids[:num_blocks])) for w in works]
    table = torch.tensor(tables, dtype=torch.long, device=device)
    offsets = torch.arange(block_size, dtype=torch.long, device=device)
    return (table.unsqueeze(-1) * block_size + offsets).view(len(works), -1)[:, :longest]


def _decode_group(rows: list[int], works: list[ChunkWork], block_size: int, device: torch.device) -> DecodeGroup:
    slots = context_slots(works, block_size, device)
    longest = slots.shape[1]
    mask = None
    if any(w.end != longest for w in works):
        lengths = torch.tensor([w.end for w in works], device=device)
        mask = (torch.arange(longest, device=device).unsqueeze(0) < lengths.unsqueeze(1)).view(len(rows), 1, 1, longest)
    return DecodeGroup(token_idx=torch.tensor(rows, dtype=torch.long, device=device), slot_idx=slots, mask=mask)
