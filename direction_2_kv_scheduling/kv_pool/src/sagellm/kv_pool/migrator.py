"""Runs migration plans: reserve under the pool lock, copy on a worker, settle under the lock again.

::

    caller: migrate(plan)                       worker thread (ThreadPoolExecutor)
      lock: planner.reserve(plan)  -> ids         copier.copy(moves)   <- no lock held: allocations,
            ready = CUDA event (GPU only)         meter.record(...)       frees and other migrations
            submit --------------------------->   lock: planner.complete(moves)   go on meanwhile
      <- MigrationHandle (dst ids known now)      future resolves -> handle.done()

The workers are started on the first non-empty plan, so a pool that never
migrates never starts a thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch

from sagellm.core.errors import KVBlockError
from sagellm.core.types import BlockMove, MigrationPlan
from sagellm.core.types.kv import MigrationRate
from sagellm.kv_pool.block_copier import BlockCopier
from sagellm.kv_pool.completion import CompletedHandle, MigrationHandle, MigrationResult
from sagellm.kv_pool.migration_meter import MigrationMeter
from sagellm.kv_pool.migration_planner import MigrationPlanner
from sagellm.kv_pool.tier_set import TierSet

Handle = MigrationHandle | CompletedHandle
OnReserved = Callable[[tuple[BlockMove, ...]], None]


class Migrator:
    """Executes :class:`MigrationPlan` s over a :class:`TierSet`, sharing the pool's (re-entrant) lock."""

    def __init__(self, tiers: TierSet, lock: threading.RLock, device: torch.device, workers: int) -> None:
        self._lock = lock
        self._planner = MigrationPlanner(tiers)
        self._copier = BlockCopier(tiers, device)
        self._meter = MigrationMeter()
        self._workers = workers
        self._executor: ThreadPoolExecutor | None = None
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def submit(self, plan: MigrationPlan, on_reserved: OnReserved | None = None) -> Handle:
        """Reserve the plan's blocks and queue its copies; ``on_reserved(moves)`` runs under the lock."""
        if len(plan) == 0:
            return CompletedHandle()
        with self._lock:
            self.check_open()
            moves = self._planner.reserve(plan)
            if on_reserved is not None:
                on_reserved(moves)
            ready = self._copier.ready_marker()
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self._workers, "sagellm-kv-migrate")
            return MigrationHandle(moves, self._executor.submit(self._run, moves, ready))

    def rates(self) -> tuple[MigrationRate, ...]:
        return self._meter.rates()

    def check_open(self) -> None:
        if self._closed:
            raise KVBlockError("this KV pool is closed (its migration workers and disk tier are gone)")

    def close(self) -> None:
        """Refuse new plans, then wait for the ones in flight to finish."""
        with self._lock:
            self._closed = True
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)

    def _run(self, moves: tuple[BlockMove, ...], ready: torch.cuda.Event | None) -> MigrationResult:
        try:
            timings = self._copier.copy(moves, ready)
        except BaseException:
            with self._lock:
                self._planner.abort(moves)
            raise
        self._meter.record(timings)
        with self._lock:
            self._planner.complete(moves)
        return MigrationResult(moves, tuple(timings))
