"""Moving a prompt's KV between two engines' pools without either engine knowing.

Both halves go through the prefix cache, with the KV manager's public
calls only, so neither engine needs a special admission path:

* **export** (prefill side): after the prefill-only request finished, its
  prompt's full blocks sit in the prefix cache. A probe sequence over those
  tokens is *admitted* (``KVManager.admit``), which looks them up and takes
  a reference on each; the channel stages them; ``release`` lets go.
* **adopt** (decode side): blocks are allocated and filled from the
  channel, then a holder sequence over the same tokens *registers* them
  (``KVManager.register_computed``), which is exactly how an engine caches
  a prompt it computed itself. The real request is then added as usual and
  its admission hits them. The holder keeps its references until that
  admission happened, so eviction cannot take the blocks in between.

Only *full* blocks are cached, so only they travel::

    prompt (P = 40 tokens, block 16): [ block 0 ][ block 1 ][ 8 tokens ]
    shipped:                           [ block 0 ][ block 1 ]
    decode side computes:                                   [ 8 tokens + first token ] -> next token

The decode side therefore recomputes ``P % block_size`` prompt tokens (at
most 15) together with the first generated token, in its first step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sagellm.core.types import BlockId, Request, SequenceState
from sagellm.engines.engine.llm_engine import LLMEngine


@dataclass(slots=True)
class HeldBlocks:
    """Prefix-cache blocks a probe or holder sequence keeps referenced until :func:`release`."""

    seq: SequenceState | None
    block_ids: list[BlockId] = field(default_factory=list)


def num_full_blocks(num_tokens: int, block_size: int) -> int:
    return num_tokens // block_size


def export_prompt_blocks(engine: LLMEngine, request_id: str, prompt: Sequence[int]) -> HeldBlocks:
    """The device blocks caching ``prompt``'s full blocks, referenced until released (may be fewer, or none).

    Fewer than all full blocks when some were evicted meanwhile, or sit in
    a lower tier the device has no room to promote them from; then the
    decode side computes the rest.
    """
    kv = engine.kv
    full = num_full_blocks(len(prompt), kv.block_size)
    if full == 0 or not kv.prefix_caching:
        return HeldBlocks(None)
    # Admission looks up all tokens but the last (one must run to give logits): add a placeholder.
    tokens = (*prompt[: full * kv.block_size], 0)
    probe = SequenceState(Request(f"{request_id}#export", tokens, namespace=engine.model_name))
    if kv.admit(probe, 1) is None:
        return HeldBlocks(None)
    hit = probe.num_cached_tokens // kv.block_size
    return HeldBlocks(probe, list(probe.block_ids[:hit]))


def adopt_blocks(engine: LLMEngine, request_id: str, prompt: Sequence[int], block_ids: Sequence[BlockId]) -> HeldBlocks:
    """Cache ``block_ids`` (already filled with ``prompt``'s first full blocks) in the prefix index.

    Blocks whose prefix was cached already are not adopted; ``release``
    frees those.
    """
    kv = engine.kv
    num_tokens = len(block_ids) * kv.block_size
    if not block_ids:
        return HeldBlocks(None)
    holder = SequenceState(Request(f"{request_id}#handoff", tuple(prompt[:num_tokens]), namespace=engine.model_name))
    holder.block_ids = list(block_ids)
    holder.num_computed_tokens = num_tokens
    kv.register_computed(holder)
    return HeldBlocks(holder, list(block_ids))


def allocate_blocks(engine: LLMEngine, num_blocks: int) -> list[BlockId]:
    """Free device blocks for incoming KV, evicting cached blocks if needed; OutOfBlocksError if impossible."""
    engine.kv.ensure_free(num_blocks)
    return engine.kv.pool.allocate(num_blocks)


def release(engine: LLMEngine, held: HeldBlocks) -> None:
    """Drop the probe's or holder's references (cached blocks stay cached, now evictable)."""
    if held.seq is not None:
        engine.kv.release(held.seq)
        held.seq = None
