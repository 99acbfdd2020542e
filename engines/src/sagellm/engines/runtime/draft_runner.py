"""A draft model run by the engine: greedy continuations over a KV store of its own.

Self speculation runs the target's own weights over a subset of its
layers; a draft model file runs all of its layers. Either way the KV is
not the target's (a layer fed by a different stack of layers sees
different inputs), so the draft keeps its own paged blocks per request.
Between calls only what changed is run: the target usually keeps a prefix
of the drafts, whose KV the draft already wrote while drafting them, so a
step's catch-up is the target's own token plus whatever the target
rejected. Blocks come from a fixed store; when it is full the least
recently drafted-for requests lose theirs, and a sequence that still does
not fit gets no drafts this step (it decodes normally).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from sagellm.core.types import DraftSequence, Request, SequenceState, blocks_for
from sagellm.engines.model.llama import LlamaForCausalLM
from sagellm.engines.runtime.input_batch import ChunkWork, build_input_batch

BLOCK_SIZE = 16


@dataclass(slots=True)
class _Draft:
    seq: SequenceState  # the tokens the draft has seen (the target's, then its own drafts) and its blocks
    computed: int = 0  # leading tokens whose KV is in the blocks
    confirmed: int = 0  # leading tokens known equal to the target sequence's
    last_used: int = 0


class PagedDraftModel:
    """Greedy drafts from ``model`` running ``layers`` (all when None), KV in ``num_blocks`` blocks of its own."""

    def __init__(
        self, name: str, model: LlamaForCausalLM, num_blocks: int, layers: Sequence[int] | None = None
    ) -> None:
        self.name = name
        self.model = model
        self.layers = None if layers is None else list(layers)
        config = model.config
        shape = (num_blocks, BLOCK_SIZE, config.num_kv_heads, config.head_dim)
        count = config.num_layers if layers is None else len(self.layers or ())
        # empty, not zeros: pages are touched only as blocks are handed out (and zeroed), so an idle store
        # costs address space only
        self.kv_caches = [(model.embed.new_empty(shape), model.embed.new_empty(shape)) for _ in range(count)]
        self._free = list(range(num_blocks - 1, -1, -1))
        self._drafts: dict[str, _Draft] = {}
        self._clock = itertools.count(1)

    # ------------------------------------------------------------------ DraftModel
    @torch.inference_mode()
    def greedy(self, sequences: Sequence[DraftSequence], num_tokens: int) -> list[list[int]]:
        drafts: list[list[int]] = [[] for _ in sequences]
        if num_tokens < 1:
            return drafts
        now = next(self._clock)
        wanted = {sequence.request_id for sequence in sequences}
        active = [
            (index, draft)
            for index, sequence in enumerate(sequences)
            if (draft := self._catch_up(sequence, num_tokens, now, wanted)) is not None
        ]
        works = [ChunkWork(draft.seq, draft.computed, draft.seq.num_tokens - draft.computed) for _, draft in active]
        for step in range(num_tokens):
            if not works:
                break
            tokens = self.logits(works).argmax(dim=-1).tolist()
            for (index, draft), token in zip(active, tokens):
                drafts[index].append(int(token))
                draft.computed = draft.seq.num_tokens
                draft.seq.token_ids.append(int(token))
            if step + 1 < num_tokens:
                works = [ChunkWork(draft.seq, draft.computed, 1) for _, draft in active]
        return drafts

    def release(self, request_id: str) -> None:
        draft = self._drafts.pop(request_id, None)
        if draft is not None:
            self._free.extend(reversed(draft.seq.block_ids))

    # ------------------------------------------------------------------ passes
    def logits(self, works: Sequence[ChunkWork], every_token: bool = False) -> torch.Tensor:
        """Logits (float32) of each chunk's last token, or of every row (drafts included: timing passes shaped
        like a verify's); the chunks' KV is written to the draft's blocks."""
        device = self.model.embed.device
        batch = build_input_batch(works, BLOCK_SIZE, device)
        rows = torch.arange(batch.input_ids.shape[0], device=device) if every_token else batch.logits_idx
        return self.model(batch.input_ids, batch.positions, batch.meta, self.kv_caches, rows, self.layers)

    def logits_of_every_token(self, works: Sequence[ChunkWork]) -> torch.Tensor:
        """``logits`` of every row: the runner's signature, so calibration times both alike."""
        return self.logits(works, every_token=True)

    def scratch_sequence(self, num_tokens: int) -> SequenceState:
        """A sequence of ``num_tokens`` zeros with blocks for them (calibration); ``release`` it after."""
        seq = SequenceState(Request("draft-scratch", (0,) * num_tokens))
        if not self._reserve(seq, num_tokens, frozenset()):
            raise ValueError(f"the draft store has no room for {num_tokens} tokens")
        self._drafts[seq.request_id] = _Draft(seq)
        return seq

    # ------------------------------------------------------------------ bookkeeping
    def _catch_up(self, sequence: DraftSequence, num_tokens: int, now: int, wanted: set[str]) -> _Draft | None:
        """The request's draft state synced to ``sequence`` with blocks for ``num_tokens`` more; None: no room."""
        tokens = sequence.token_ids
        if not tokens:
            return None
        draft = self._drafts.get(sequence.request_id)
        if draft is None:
            draft = self._drafts[sequence.request_id] = _Draft(
                SequenceState(Request(sequence.request_id, (tokens[0],)))
            )
        own = draft.seq.token_ids
        same = min(draft.confirmed, len(tokens))
        limit = min(draft.computed, len(tokens))
        while same < limit and own[same] == tokens[same]:
            same += 1
        del own[same:]
        own.extend(tokens[same:])
        draft.computed = min(same, len(tokens) - 1)  # the last token always runs: its logits give the first draft
        draft.confirmed = len(tokens)
        draft.last_used = now
        if not self._reserve(draft.seq, len(tokens) + num_tokens - 1, wanted):
            self.release(sequence.request_id)
            return None
        return draft

    def _reserve(self, seq: SequenceState, num_positions: int, keep: set[str] | frozenset[str]) -> bool:
        """Blocks for ``num_positions`` tokens of KV, taking least recently used requests' blocks if needed."""
        missing = blocks_for(num_positions, BLOCK_SIZE) - len(seq.block_ids)
        while missing > len(self._free):
            victims = [d for rid, d in self._drafts.items() if rid not in keep and d.seq is not seq]
            if not victims:
                return False
            self.release(min(victims, key=lambda d: d.last_used).seq.request_id)
        if missing > 0:
            taken = [self._free.pop() for _ in range(missing)]
            seq.block_ids.extend(taken)
            self._clear(taken)
        return True

    def _clear(self, block_ids: list[int]) -> None:
        """Zero blocks as they are handed out: attention masks the unwritten slots of a block by weight, and a
        zero weight times uninitialised memory (NaN) would still be NaN."""
        index = torch.tensor(block_ids, dtype=torch.long, device=self.model.embed.device)
        for key_blocks, value_blocks in self.kv_caches:
            key_blocks.index_fill_(0, index, 0)
            value_blocks.index_fill_(0, index, 0)
