"""Fork a running sequence: the child shares the parent's KV, so it prefills only what it adds.

A probe (a request's reasoning so far + "Final answer:") and a
self-consistency sample (the prompt, sampled again) both continue a
sequence whose KV is already computed. As vLLM and SGLang fork, the child
takes the parent's block table: full blocks are shared by reference count
and never written again; the partial last block, which both will write
into, is copied once, now::

    parent  [ b0 | b1 | b2 | b3: t48 t49 _ _ ]      num_tokens = 50, block_size = 16
    child   [ b0 | b1 | b2 | b3': t48 t49 _ _ ]     b0-b2 shared (refs +1), b3' = copy of b3

Copying at the fork, not on the first write (copy-on-write), keeps the
scheduler's prices true: it plans a sequence's growth as new blocks only,
and a lazy copy would take a block no plan counted. The child's full
blocks that the prefix cache holds are pinned in the index too (an index
reference, as a cache hit takes), so the parent finishing cannot make them
evictable while the child still reads them; a cached block the pin cannot
reach (demoted under tiers) ends the share there and the child recomputes
from it.

The cost of a fork is one block copy (all layers) when the fork point is
not block-aligned, and nothing else: the child's first chunk is what it
adds (a probe's suffix; a sample's last prompt token, for its own logits).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from sagellm.core.errors import OutOfBlocksError
from sagellm.core.types import BlockId, Request, SamplingParams, SequenceState, SequenceStatus, blocks_for
from sagellm.engines.runtime.cache_entries import EntryId
from sagellm.engines.runtime.kv_manager import KVManager, PinnedBlocks


@dataclass(slots=True)
class Fork:
    """A forked sequence and the prefix-index references it holds until :func:`release_fork`."""

    seq: SequenceState
    entries: list[EntryId] = field(default_factory=list)
    released: bool = False


def fork_sequence(
    kv: KVManager,
    parent: SequenceState,
    request_id: str,
    num_tokens: int,
    extra_token_ids: Sequence[int],
    sampling: SamplingParams,
) -> Fork | None:
    """A child whose tokens are ``parent``'s first ``num_tokens`` + ``extra_token_ids``, sharing their KV.

    The parent's KV must cover ``num_tokens``. None when no block is free
    for the tail copy (the caller tries again after a later step). The
    child is RUNNING with ``num_computed_tokens`` = what it shares; the
    engine schedules the rest like any running sequence's next chunk.
    """
    if num_tokens > parent.num_computed_tokens or blocks_for(num_tokens, kv.block_size) > len(parent.block_ids):
        raise ValueError(
            f"{parent.request_id}: cannot fork at {num_tokens}, its KV covers {parent.num_computed_tokens}"
        )
    tokens = parent.token_ids[:num_tokens]
    request = Request(
        request_id,
        tuple(tokens) + tuple(extra_token_ids),
        sampling,
        arrival_time=time.monotonic(),
        priority=parent.request.priority,
        namespace=parent.request.namespace,
    )
    child = SequenceState(request, status=SequenceStatus.RUNNING)
    shared = _share_blocks(kv, parent, num_tokens)
    if shared is None:
        return None
    child.block_ids, child.num_computed_tokens, entries = shared
    return Fork(child, entries)


def fork_prefix(kv: KVManager, parent: SequenceState, request_id: str, num_tokens: int) -> Fork | None:
    """A sequence that only holds ``parent``'s first ``num_tokens`` of KV (never runs): what samples fork from
    after the parent has moved on or ended."""
    return fork_sequence(kv, parent, request_id, num_tokens, (), parent.request.sampling)


def release_fork(kv: KVManager, fork: Fork) -> None:
    """Let go of the fork's index references (its blocks go with the sequence, through ``kv.release``)."""
    if fork.released:
        return
    fork.released = True
    kv.unpin(PinnedBlocks([], fork.entries))
    fork.entries = []


def _share_blocks(
    kv: KVManager, parent: SequenceState, num_tokens: int
) -> tuple[list[BlockId], int, list[EntryId]] | None:
    """The child's block table, how many tokens of KV it holds, and the index entries pinned for it."""
    size = kv.block_size
    num_full = num_tokens // size
    partial = num_tokens % size != 0
    if partial:
        try:
            kv.ensure_free(1)  # before anything is held: a refusal changes nothing
        except OutOfBlocksError:
            return None
    pinned = kv.pin_prefix(parent.token_ids[: num_full * size], parent.request.namespace)
    blocks = list(pinned.block_ids)  # one pool reference each is now the child's
    private: list[BlockId] = []
    for block in parent.block_ids[len(blocks) : num_full]:
        if kv.entries.entry_at(block) is not None:  # cached, but not pinned: stop sharing here (see module doc)
            kv.pool.retain(private)
            blocks += private
            return blocks, len(blocks) * size, pinned.entries
        private.append(block)
    kv.pool.retain(private)
    blocks += private
    if partial:
        tail = parent.block_ids[num_full]
        kv.pool.retain([tail])
        blocks.append(kv.pool.copy_on_write(tail))  # the child's reference moves to a private copy
    return blocks, num_tokens, pinned.entries
