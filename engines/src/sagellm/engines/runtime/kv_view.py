"""The engine's :class:`~sagellm.core.protocols.KVView`: the KV manager's real prices for one step's plan.

A snapshot can say how many blocks are free; only the KV manager knows
what admitting a waiting sequence really takes (promoting its lower-tier
hit blocks, swapping its KV back in, pinning cached blocks that were
counted as evictable) and what preempting a running one really gives back
(not the cached blocks other sequences share). The builder plans with
these prices, so the engine applies the plan as it is.
"""

from __future__ import annotations

from collections.abc import Mapping

from sagellm.core.types import SequenceState, SequenceView, blocks_to_grow
from sagellm.engines.runtime.kv_manager import KVManager


class StepKVView:
    """Answers for one build: ``waiting`` and ``running`` are the engine's sequences by request id."""

    def __init__(
        self, kv: KVManager, waiting: Mapping[str, SequenceState], running: Mapping[str, SequenceState]
    ) -> None:
        self._kv = kv
        self._waiting = waiting
        self._running = running
        self.block_size = kv.block_size
        self.num_free_blocks = kv.num_free_blocks

    def blocks_needed(self, seq: SequenceView, num_new_tokens: int) -> int:
        waiting = self._waiting.get(seq.request_id)
        if waiting is None:
            return blocks_to_grow(seq, num_new_tokens, self.block_size)
        return self._kv.admission_blocks(waiting, num_new_tokens)

    def blocks_freed(self, seq: SequenceView) -> int:
        running = self._running.get(seq.request_id)
        return seq.num_blocks_held if running is None else self._kv.preemption_blocks(running)
