"""Flatten one step's scheduled chunks into the tensors the model consumes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from sagellm.core.types import SequenceState
from sagellm.engines.model.attention_metadata import AttentionMetadata, DecodeGroup, PrefillChunk, PrefillGroup


@dataclass(frozen=True, slots=True)
class ChunkWork:
    """A chunk resolved against its sequence: which tokens, which blocks.

    ``drafts``: speculative tokens run after the chunk's last token, in the
    same pass; their KV goes to the slots after ``end`` and every one of
    them (and the last token) gets a logits row, so the step can check them.
    """

    seq: SequenceState
    start: int
    num_tokens: int
    drafts: tuple[int, ...] = ()

    @property
    def end(self) -> int:
        return self.start + self.num_tokens

    @property
    def kv_end(self) -> int:
        """Where this pass's KV writes end: past the drafts."""
        return self.end + len(self.drafts)

    @property
    def samples(self) -> bool:
        """A chunk that reaches the last known token yields the next token."""
        return self.end == self.seq.num_tokens

    @property
    def num_logits_rows(self) -> int:
        """Rows of logits a sampling chunk yields: its last token's, then one per draft."""
        return 1 + len(self.drafts)


@dataclass(slots=True)
class InputBatch:
    input_ids: torch.Tensor  # [T]
    positions: torch.Tensor  # [T]
    meta: AttentionMetadata
    logits_idx: torch.Tensor  # rows whose logits are sampled: one per sequence, 1 + drafts for a speculating one
    sampled: list[SequenceState]  # the S sequences, in logits order


def slots_of(block_ids: Sequence[int], start: int, end: int, block_size: int) -> list[int]:
    return [block_ids[p // block_size] * block_size + p % block_size for p in range(start, end)]


def build_input_batch(works: Sequence[ChunkWork], block_size: int, device: torch.device) -> InputBatch:
    input_ids: list[int] = []
    positions: list[int] = []
    slot_mapping: list[int] = []
    logits_rows: list[int] = []
    sampled: list[SequenceState] = []
    decode = _DecodeRows()
    prefills: list[PrefillChunk] = []
    prefill_works: list[ChunkWork] = []
    for work in works:
        seq, begin = work.seq, len(input_ids)
        input_ids.extend(seq.token_ids[work.start : work.end])
        input_ids.extend(work.drafts)
        positions.extend(range(work.start, work.kv_end))
        slot_mapping.extend(slots_of(seq.block_ids, work.start, work.kv_end, block_size))
        if work.num_tokens == 1:  # a decode, or a verify: its last token and each draft attend as decodes
            for offset in range(work.kv_end - work.start):
                decode.add(begin + offset, seq.block_ids, work.start + offset + 1)
        else:
            prefills.append(_prefill_chunk(work, begin, block_size, device))
            prefill_works.append(work)
        if work.samples:
            logits_rows.extend(range(len(input_ids) - work.num_logits_rows, len(input_ids)))
            sampled.append(seq)
    meta = AttentionMetadata(
        slot_mapping=torch.tensor(slot_mapping, dtype=torch.long, device=device),
        decode=decode.group(block_size, device) if decode.rows else None,
        prefills=prefills,
        prefill_group=_prefill_group(prefills, prefill_works, block_size, device) if prefills else None,
    )
    return InputBatch(
        input_ids=torch.tensor(input_ids, dtype=torch.long, device=device),
        positions=torch.tensor(positions, dtype=torch.long, device=device),
        meta=meta,
        logits_idx=torch.tensor(logits_rows, dtype=torch.long, device=device),
        sampled=sampled,
    )


def _prefill_chunk(work: ChunkWork, begin: int, block_size: int, device: torch.device) -> PrefillChunk:
    end = begin + work.kv_end - work.start
    if work.start == 0:
        return PrefillChunk(begin, end, block_table=None, context_len=work.kv_end, mask=None)
    table = block_tables([work], block_size, device)[0]
    query_pos = torch.arange(work.start, work.kv_end, device=device).unsqueeze(1)
    key_pos = torch.arange(work.kv_end, device=device).unsqueeze(0)
    return PrefillChunk(begin, end, block_table=table, context_len=work.kv_end, mask=key_pos <= query_pos)


def _prefill_group(
    chunks: Sequence[PrefillChunk], works: Sequence[ChunkWork], block_size: int, device: torch.device
) -> PrefillGroup:
    return PrefillGroup(
        chunk_rows=torch.tensor([[c.begin, c.end] for c in chunks], dtype=torch.long, device=device),
        context_lens=torch.tensor([c.context_len for c in chunks], dtype=torch.long, device=device),
        block_table=block_tables(works, block_size, device),
    )


def block_tables(works: Sequence[ChunkWork], block_size: int, device: torch.device) -> torch.Tensor:
    """[B, blocks of the longest context] block ids of each chunk's whole context.

    Python touches one entry per block, not per token. Padding is block 0, a
    valid block whose contents the attention mask hides.
    """
    num_blocks = -(-max(w.kv_end for w in works) // block_size)
    tables = [_padded(w.seq.block_ids[:num_blocks], num_blocks) for w in works]
    return torch.tensor(tables, dtype=torch.long, device=device)


def _padded(block_ids: list[int], length: int) -> list[int]:
    return block_ids + [0] * (length - len(block_ids))


@dataclass(slots=True)
class _DecodeRows:
    """Rows that attend as single queries: each with its sequence's blocks and how much of them it sees.

    A verify's rows are decode rows too (row ``i`` sees the context up to
    its own position): the same paged decode kernel as a plain decode step,
    ~3x cheaper per row than a prefill chunk's causal kernel at these sizes.
    """

    rows: list[int] = field(default_factory=list)
    tables: list[list[int]] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)

    def add(self, row: int, block_ids: list[int], context_len: int) -> None:
        self.rows.append(row)
        self.tables.append(block_ids)
        self.lengths.append(context_len)

    def group(self, block_size: int, device: torch.device) -> DecodeGroup:
        num_blocks = -(-max(self.lengths) // block_size)
        table = torch.tensor(
            [_padded(ids[:num_blocks], num_blocks) for ids in self.tables], dtype=torch.long, device=device
        )
        width = num_blocks * block_size
        lengths = torch.tensor(self.lengths, dtype=torch.long, device=device)
        mask_bias = None
        if any(length != width for length in self.lengths):
            beyond = torch.arange(width, device=device).unsqueeze(0) >= lengths.unsqueeze(1)
            mask_bias = torch.zeros(beyond.shape, dtype=torch.float32, device=device)
            mask_bias = mask_bias.masked_fill_(beyond, float("-inf")).view(len(self.rows), 1, 1, width)
        return DecodeGroup(
            token_idx=torch.tensor(self.rows, dtype=torch.long, device=device),
            block_table=table,
            mask_bias=mask_bias,
            context_lens=lengths,
        )
