"""S3-FIFO: a small FIFO filters one-hit wonders before they reach the main FIFO."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from sagellm.core.errors import ConfigError
from sagellm.core.types import BlockId, EvictionContext
from sagellm.eviction_policy.base import BaseEvictionPolicy
from sagellm.eviction_policy.instant_order import InstantBatch

_MAX_FREQ = 3  # two bits per block in the paper: enough to tell "hot" from "hit once"
_SMALL, _MAIN = 0, 1


class S3FIFOEvictionPolicy(BaseEvictionPolicy):
    """S3-FIFO (Yang et al., SOSP 2023): three FIFO queues, lazy promotion, quick demotion.

    ::

        new block --> S (small, ~10 %) --hit >= promote_at--> M (main) --+
                      |  no hit: evicted, id remembered              ^   | hit: back to the tail,
                      v                                              |   | one hit less
                      G (ghost ids) -- re-inserted: straight to M ---+<--+

    Most cached prefix blocks are never hit again (a one-off prompt tail);
    S lets them go after a short stay instead of letting them push hot blocks
    out of M, and M only spends effort (a re-queue) on blocks that were hit.
    Hits only bump a 2-bit counter: no list moves on the hot path.

    A decision runs the S3-FIFO eviction loop, which moves blocks between
    queues, but does not forget its victims: they wait, still tracked, until
    ``on_remove`` (an evicted S block then leaves its id in G), and come
    first in the next decision if the cache kept them. A block in use when
    the loop meets it counts as hit: from S it moves to M, in M it goes
    back to the tail (so in-use blocks are not re-scanned by every decision). ``capacity`` sizes
    S (``small_ratio``) and G (``ghost_ratio``); by default it is the largest
    number of blocks tracked at once (the pool size once full). Ghosts are
    keyed by block id (see :class:`ARCEvictionPolicy`). Blocks inserted in
    one instant enter their queue tail first (``tail_first``,
    :mod:`~sagellm.eviction_policy.instant_order`). Hooks are O(1); a
    decision is O(victims + blocks re-queued), amortised O(1) per victim.
    """

    def __init__(
        self,
        small_ratio: float = 0.1,
        ghost_ratio: float = 0.9,
        promote_at: int = 1,
        capacity: int | None = None,
        tail_first: bool = True,
    ) -> None:
        if not 0.0 < small_ratio < 1.0:
            raise ConfigError(f"small_ratio must be in (0, 1), got {small_ratio}")
        if ghost_ratio < 0.0:
            raise ConfigError(f"ghost_ratio must be >= 0, got {ghost_ratio}")
        if not 1 <= promote_at <= _MAX_FREQ:
            raise ConfigError(f"promote_at must be in 1..{_MAX_FREQ}, got {promote_at}")
        self._small: OrderedDict[BlockId, None] = OrderedDict()
        self._main: OrderedDict[BlockId, None] = OrderedDict()
        self._ghost: OrderedDict[BlockId, None] = OrderedDict()
        self._chosen: dict[BlockId, int] = {}  # victims awaiting on_remove -> the queue they left
        self._freq: dict[BlockId, int] = {}
        self._small_ratio, self._ghost_ratio, self._promote_at = small_ratio, ghost_ratio, promote_at
        self._capacity = capacity or 0
        self._batch = InstantBatch() if tail_first else None

    @property
    def name(self) -> str:
        return "s3fifo"

    def on_insert(self, block_id: BlockId, now: float = 0.0) -> None:
        if block_id in self._freq:
            self.on_access(block_id, now)
            return
        self._freq[block_id] = 0
        if block_id in self._ghost:  # evicted from S too early once: skip the probation
            del self._ghost[block_id]
            self._append(self._main, block_id, now)
        else:
            self._append(self._small, block_id, now)
        tracked = len(self._freq)
        if tracked > self._capacity:
            self._capacity = tracked

    def on_access(self, block_id: BlockId, now: float = 0.0) -> None:
        freq = self._freq.get(block_id)
        if freq is None:
            return
        if freq < _MAX_FREQ:
            self._freq[block_id] = freq + 1
        if block_id in self._chosen:  # chosen, kept, and now hit: it earned its place
            del self._chosen[block_id]
            self._append(self._main, block_id, now)

    def _append(self, queue: OrderedDict[BlockId, None], block_id: BlockId, now: float) -> None:
        if self._batch is not None:
            self._batch.touch(queue, block_id, now)
        else:
            queue[block_id] = None

    def on_remove(self, block_id: BlockId) -> None:
        if self._freq.pop(block_id, None) is None:
            return
        origin = self._chosen.pop(block_id, None)
        if origin is None and block_id in self._small:
            del self._small[block_id]
            origin = _SMALL
        elif origin is None:
            del self._main[block_id]
        if origin == _SMALL:
            self._ghost[block_id] = None
            limit = int(self._ghost_ratio * self._capacity)
            while len(self._ghost) > limit:
                self._ghost.popitem(last=False)

    def select_victims(self, context: EvictionContext) -> list[BlockId]:
        wanted = context.num_blocks
        if wanted <= 0:
            return []
        if self._batch is not None:
            self._batch.flush()
        is_evictable = context.is_evictable
        victims = [block_id for block_id in self._chosen if is_evictable(block_id)][:wanted]
        small_target = self._small_ratio * self._capacity
        stuck_small = stuck_main = 0  # in-use blocks re-queued since the queue last made progress
        while len(victims) < wanted:
            can_small, can_main = stuck_small < len(self._small), stuck_main < len(self._main)
            if can_small and (len(self._small) >= small_target or not can_main):
                victim, stuck = self._step_small(is_evictable)
                stuck_small = stuck_small + 1 if stuck else 0
            elif can_main:
                victim, stuck = self._step_main(is_evictable)
                stuck_main = stuck_main + 1 if stuck else 0
            else:
                break
            if victim is not None:
                victims.append(victim)
        return victims

    def _step_small(self, is_evictable: Callable[[BlockId], bool]) -> tuple[BlockId | None, bool]:
        """Advance S by one block: (victim or None, whether the block was in use)."""
        block_id, _ = self._small.popitem(last=False)
        if not is_evictable(block_id):  # in use now: as good as a hit, and re-queueing it in S would re-scan it
            self._main[block_id] = None
            return None, False
        if self._freq[block_id] >= self._promote_at:
            self._freq[block_id] = 0
            self._main[block_id] = None
            return None, False
        self._chosen[block_id] = _SMALL
        return block_id, False

    def _step_main(self, is_evictable: Callable[[BlockId], bool]) -> tuple[BlockId | None, bool]:
        """Advance M by one block: a hit block is re-queued with one hit less, an unhit one is the victim."""
        block_id, _ = self._main.popitem(last=False)
        if not is_evictable(block_id):
            self._main[block_id] = None
            return None, True
        freq = self._freq[block_id]
        if freq > 0:
            self._freq[block_id] = freq - 1
            self._main[block_id] = None
            return None, False
        self._chosen[block_id] = _MAIN
        return block_id, False

    def queues(self) -> dict[str, list[BlockId]]:
        """S, M, G oldest first, and victims awaiting removal (tests, debugging)."""
        return {
            "small": list(self._small),
            "main": list(self._main),
            "ghost": list(self._ghost),
            "chosen": list(self._chosen),
        }

    def __contains__(self, block_id: object) -> bool:
        return block_id in self._freq

    def __len__(self) -> int:
        return len(self._freq)
