"""Moving a prompt's KV between two engines' pools through their prefix caches.

Both halves are explicit KV-manager calls, so neither engine needs a
special admission path or a stand-in sequence:

* **export** (prefill side): after the prefill-only request finished, its
  prompt's full blocks sit in the prefix cache. ``pin_prefix`` references
  the device-resident run of them; the channel stages them; ``unpin`` lets go.
* **adopt** (decode side): blocks are allocated and filled from the
  channel, then ``adopt_prefix`` caches them exactly as an engine caches a
  prompt it computed itself. The real request is then added as usual and
  its admission hits them. The pin holds them until that admission
  happened, so eviction cannot take the blocks in between.

Only *full* blocks are cached, so only they travel::

    prompt (P = 40 tokens, block 16): [ block 0 ][ block 1 ][ 8 tokens ]
    shipped:                           [ block 0 ][ block 1 ]
    decode side computes:                                   [ 8 tokens + first token ] -> next token

The decode side therefore recomputes ``P % block_size`` prompt tokens (at
most 15) together with the first generated token, in its first step.
"""

from __future__ import annotations

from collections.abc import Sequence

from sagellm.core.types import BlockId
from sagellm.engines.engine.llm_engine import LLMEngine
from sagellm.engines.runtime.kv_manager import PinnedBlocks


def export_prompt_blocks(engine: LLMEngine, prompt: Sequence[int]) -> PinnedBlocks:
    """The device blocks caching ``prompt``'s full blocks, pinned until released (may be fewer, or none).

    Fewer than all full blocks when some were evicted meanwhile, or demoted
    to a lower tier; then the decode side computes the rest.
    """
    return engine.kv.pin_prefix(prompt, engine.model_name)


def adopt_blocks(engine: LLMEngine, prompt: Sequence[int], block_ids: Sequence[BlockId]) -> PinnedBlocks:
    """Cache ``block_ids`` (already filled with ``prompt``'s first full blocks) in the prefix index, pinned."""
    return engine.kv.adopt_prefix(prompt, engine.model_name, block_ids)


def allocate_blocks(engine: LLMEngine, num_blocks: int) -> list[BlockId]:
    """Free device blocks for incoming KV, evicting cached blocks if needed; OutOfBlocksError if impossible."""
    engine.kv.ensure_free(num_blocks)
    return engine.kv.pool.allocate(num_blocks)


def release(engine: LLMEngine, held: PinnedBlocks) -> None:
    """Drop the pin (cached blocks stay cached, evictable once the request that hit them is done)."""
    engine.kv.unpin(held)
