"""Belady's MIN: evict the block whose next use lies farthest ahead. Needs the future: offline only."""

from __future__ import annotations

import math
from collections import deque

from sagellm.core.types import BlockId, EvictionContext
from sagellm.eviction_policy.heap_policy import HeapEvictionPolicy
from sagellm.eviction_policy.sim.trace import Trace


class FutureAccesses:
    """Where in the trace each block is looked up next; the replay advances it request by request.

    Positions count block lookups in trace order, so within one request a
    block's ancestors come before it: an ancestor is always needed no later
    than its descendants, and Belady never keeps a descendant whose prefix
    it dropped (which a prefix cache could not hit anyway).
    """

    def __init__(self, trace: Trace) -> None:
        self._positions: dict[int, deque[int]] = {}
        position = 0
        for request in trace.requests:
            for block in request.hash_ids:
                self._positions.setdefault(block, deque()).append(position)
                position += 1

    def advance(self, block: int) -> None:
        """The replay has reached the current lookup of ``block``."""
        queue = self._positions.get(block)
        if queue:
            queue.popleft()

    def next_use(self, block: int) -> float:
        """Position of the next lookup of ``block`` after the current one (``inf``: never again)."""
        queue = self._positions.get(block)
        return float(queue[0]) if queue else math.inf


class BeladyEvictionPolicy(HeapEvictionPolicy):
    """The offline optimum for a demand-filled cache, the upper bound of the simulator's tables.

    Key = ``-next_use`` taken when a block is touched: a block's next use
    only changes when it is used, so the key stays exact until the next
    hook. Block ids must be the trace's hash ids.
    """

    def __init__(self, future: FutureAccesses) -> None:
        super().__init__(tail_first=False)  # next uses are distinct: ties only among never-again blocks
        self._future = future

    @property
    def name(self) -> str:
        return "belady"

    def on_insert(self, block_id: BlockId, now: float = 0.0) -> None:
        self._push(block_id, -self._future.next_use(block_id), now)

    def on_access(self, block_id: BlockId, now: float = 0.0) -> None:
        if block_id in self._heap:
            self._push(block_id, -self._future.next_use(block_id), now)

    def _in_use_key(self, block_id: BlockId, context: EvictionContext) -> float:
        return -self._future.next_use(block_id)
