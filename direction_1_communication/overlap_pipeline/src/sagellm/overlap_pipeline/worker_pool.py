"""Long-lived worker threads fed through a queue: no thread is created per call."""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable
from typing import Any

from sagellm.core.errors import ConfigError
from sagellm.overlap_pipeline.errors import ManagerClosedError
from sagellm.overlap_pipeline.pending import PendingWork

MAX_WORKERS = 64
_pool_ids = itertools.count()
_Job = tuple[Callable[[], Any], PendingWork]


class WorkerPool:
    """``num_workers`` daemon threads running submitted work in submission order.

    With one worker the order is strict FIFO, which collectives need: every
    rank must issue its all-reduces in the same order, and two workers could
    swap two of them on one rank and deadlock the group. Creating a thread
    costs ~50-100 us, as much as a small decode layer; a queue hand-off costs
    a few us, so the threads live as long as the pool.
    """

    def __init__(self, num_workers: int = 1, name: str = "sagellm-overlap") -> None:
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or not 1 <= num_workers <= MAX_WORKERS:
            raise ConfigError(
                f"overlap_pipeline num_workers must be an integer in 1..{MAX_WORKERS}, got {num_workers!r}"
            )
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        pool_id = next(_pool_ids)
        self._threads = [
            threading.Thread(target=self._serve, name=f"{name}-{pool_id}-{i}", daemon=True) for i in range(num_workers)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def num_workers(self) -> int:
        return len(self._threads)

    @property
    def closed(self) -> bool:
        return self._closed

    def submit(self, work: Callable[[], Any], pending: PendingWork) -> None:
        """Queue ``work``; its outcome lands in ``pending``. ManagerClosedError after close()."""
        with self._lock:  # no job may slip in behind the stop markers
            if self._closed:
                raise ManagerClosedError("overlap manager is closed; no new work is accepted")
            self._queue.put((work, pending))

    def close(self) -> None:
        """Stop accepting work, let the queued and running work finish, join the threads."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for _ in self._threads:
                self._queue.put(None)
        current = threading.current_thread()
        for thread in self._threads:
            if thread is not current:  # close() called from inside a job must not join itself
                thread.join()

    def _serve(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            work, pending = job
            pending.run(work)
