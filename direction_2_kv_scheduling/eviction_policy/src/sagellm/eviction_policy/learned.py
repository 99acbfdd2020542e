"""Evict the block a lifetime predictor expects to wait longest for its next reuse."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

from sagellm.core.errors import ConfigError
from sagellm.core.protocols import LifetimePredictor
from sagellm.core.types import BlockId, EvictionContext, KVBlockMeta
from sagellm.eviction_policy.base import BaseEvictionPolicy
from sagellm.eviction_policy.instant_order import InstantBatch
from sagellm.eviction_policy.reuse_predictor import ReuseIntervalPredictor

_SKIP_LIMIT = 64  # in-use blocks one class may skip per decision before the others are preferred


class LearnedEvictionPolicy(BaseEvictionPolicy):
    """Belady with a predicted future: ask a :class:`LifetimePredictor` how long each candidate will wait.

    Belady's optimum evicts the block reused farthest in the future. This
    policy asks ``predictor.predict(meta, now)`` for that wait and evicts
    the longest — but only among a few candidates, never all blocks::

        class 0 (not reused yet):  LRU [ a  b  c ...]   predict(a) = 410 s  <- evict
        class 1 (reused before):   LRU [ d  e ...]      predict(d) =  35 s

    Blocks are kept in one LRU queue per reuse count, ``num_classes`` of
    them (default 2: never reused / reused; the last class takes every
    count from ``num_classes - 1`` on). Within a
    class the least recently used block has idled longest, which for any
    predictor whose wait grows with idle time makes it the class's best
    victim; a decision compares the heads of the classes, re-predicting them
    at the decision's ``now`` — so a prediction is never stale, and a
    decision costs one prediction per class plus one per victim. In-use
    blocks a walk meets move to the MRU end of their class; a class that
    meets more than 64 of them (or 2 × the victims asked) in one decision
    rests while another class has candidates, so a class crowded with
    in-use blocks cannot make every decision scan them all.

    The predictor also learns online, and sees further than the cache
    keeps blocks (so its statistics are not cut short by the cache's own
    evictions): each hit reports ``observe(meta, reused_after=gap)``; an
    evicted block's record waits in a ghost history (``history_ratio`` ×
    capacity entries), and a block that comes back from there reports its
    true gap and keeps its reuse count; one that falls out of the history
    reports ``observe(meta, None)`` (not reused). History is keyed by block
    id (see :class:`ARCEvictionPolicy`).

    ``predictor`` is any object implementing the core protocol (engines
    pass one with ``create_eviction_policy(config, predictor=...)``);
    without one the package's :class:`ReuseIntervalPredictor` is used. The
    metadata it sees is the policy's own record (``created_at``,
    ``last_access``, ``access_count`` = reuses so far); the policy mutates
    it after each call, so a predictor must copy what it keeps.
    """

    def __init__(
        self,
        predictor: LifetimePredictor | None = None,
        history_ratio: float = 4.0,
        num_classes: int = 2,
        capacity: int | None = None,
        tail_first: bool = True,
    ) -> None:
        if predictor is not None and not isinstance(predictor, LifetimePredictor):
            raise ConfigError(f"predictor must implement LifetimePredictor, got {type(predictor).__name__}")
        if history_ratio < 0:
            raise ConfigError(f"history_ratio must be >= 0, got {history_ratio}")
        if num_classes < 1:
            raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
        self._predictor: LifetimePredictor = predictor if predictor is not None else ReuseIntervalPredictor()
        self._classes: list[OrderedDict[BlockId, None]] = [OrderedDict() for _ in range(num_classes)]
        self._skip_budget = [_SKIP_LIMIT] * num_classes  # halved each time a class's walk stops at in-use blocks
        self._meta: dict[BlockId, KVBlockMeta] = {}
        self._history: OrderedDict[BlockId, KVBlockMeta] = OrderedDict()
        self._history_ratio = history_ratio
        self._capacity = capacity or 0
        self._batch = InstantBatch() if tail_first else None

    @property
    def name(self) -> str:
        return "learned"

    @property
    def predictor(self) -> LifetimePredictor:
        return self._predictor

    def use_predictor(self, predictor: LifetimePredictor) -> None:
        """Rank by ``predictor`` (an engine's configured one) instead of the built-in reuse-interval one."""
        if not isinstance(predictor, LifetimePredictor):
            raise ConfigError(f"predictor must implement LifetimePredictor, got {type(predictor).__name__}")
        self._predictor = predictor

    def reuse_class(self, block_id: BlockId) -> int | None:
        """Queue a tracked block is in (its reuse count, capped); ``None`` if untracked."""
        meta = self._meta.get(block_id)
        return None if meta is None else self._class_of(meta)

    def on_insert(self, block_id: BlockId, now: float = 0.0) -> None:
        if block_id in self._meta:
            self.on_access(block_id, now)
            return
        meta = self._history.pop(block_id, None)
        if meta is None:
            meta = KVBlockMeta(block_id=block_id, created_at=now, last_access=now)
        else:  # back from the ghost history: a reuse the cache missed
            self._predictor.observe(meta, now - meta.last_access)
            meta.access_count += 1
            meta.last_access = now
        self._meta[block_id] = meta
        self._enqueue(block_id, meta, now)
        if len(self._meta) > self._capacity:
            self._capacity = len(self._meta)

    def on_access(self, block_id: BlockId, now: float = 0.0) -> None:
        meta = self._meta.get(block_id)
        if meta is None:
            return
        self._predictor.observe(meta, now - meta.last_access)
        del self._classes[self._class_of(meta)][block_id]
        meta.access_count += 1
        meta.last_access = now
        self._enqueue(block_id, meta, now)

    def on_remove(self, block_id: BlockId) -> None:
        meta = self._meta.pop(block_id, None)
        if meta is None:
            return
        del self._classes[self._class_of(meta)][block_id]
        self._history[block_id] = meta
        limit = int(self._history_ratio * self._capacity)
        while len(self._history) > limit:
            _, gone = self._history.popitem(last=False)
            self._predictor.observe(gone, None)

    def select_victims(self, context: EvictionContext) -> list[BlockId]:
        wanted = context.num_blocks
        if wanted <= 0:
            return []
        if self._batch is not None:
            self._batch.flush()
        in_use: list[tuple[int, BlockId]] = []
        walks = [iter(queue) for queue in self._classes]
        skips: list[int] | None = [max(budget, 2 * wanted) for budget in self._skip_budget]
        heads = [self._next_candidate(c, walks[c], context, in_use, skips) for c in range(len(walks))]
        victims: list[BlockId] = []
        while len(victims) < wanted:
            best, best_wait = -1, -1.0
            for c, (wait, block_id) in enumerate(heads):
                if block_id is not None and wait > best_wait:
                    best, best_wait = c, wait
            if best >= 0:
                victims.append(heads[best][1])  # type: ignore[arg-type]
                if len(victims) < wanted:
                    heads[best] = self._next_candidate(best, walks[best], context, in_use, skips)
            elif skips is not None:  # every class stopped at in-use blocks: walk them out to the end
                skips = None
                heads = [self._next_candidate(c, walks[c], context, in_use, None) for c in range(len(walks))]
            else:
                break
        for c, block_id in in_use:  # in use now: as fresh as a hit (moved after the walks)
            self._meta[block_id].last_access = context.now
            self._classes[c].move_to_end(block_id)
        return victims

    def _next_candidate(
        self,
        c: int,
        walk: Iterator[BlockId],
        context: EvictionContext,
        in_use: list[tuple[int, BlockId]],
        skips: list[int] | None,
    ) -> tuple[float, BlockId | None]:
        """(predicted wait, block) of the next evictable block of class ``c``; (-1, None) when none is left
        or after ``skips[c]`` in-use blocks (``None``: no limit).

        A class whose walk stops at its limit gets half the limit next
        decision (never below 2 x victims), and twice it (up to
        ``_SKIP_LIMIT``) after one that yields a block: a class crowded with
        in-use blocks (new blocks of running requests) costs a few look-ups
        per decision instead of ``_SKIP_LIMIT``.
        """
        is_evictable = context.is_evictable
        left = None if skips is None else skips[c]
        for block_id in walk:
            if is_evictable(block_id):
                self._skip_budget[c] = min(_SKIP_LIMIT, 2 * self._skip_budget[c])
                wait = self._predictor.predict(self._meta[block_id], context.now)
                return (wait if wait == wait else 0.0), block_id  # NaN: no idea, so no reason to evict
            in_use.append((c, block_id))
            if left is not None:
                left -= 1
                if left <= 0:
                    self._skip_budget[c] = max(1, self._skip_budget[c] // 2)
                    break
        return -1.0, None

    def _enqueue(self, block_id: BlockId, meta: KVBlockMeta, now: float) -> None:
        queue = self._classes[self._class_of(meta)]
        if self._batch is not None:
            self._batch.touch(queue, block_id, now)
        else:
            queue[block_id] = None

    def _class_of(self, meta: KVBlockMeta) -> int:
        return min(meta.access_count, len(self._classes) - 1)

    def __contains__(self, block_id: object) -> bool:
        return block_id in self._meta

    def __len__(self) -> int:
        return len(self._meta)
