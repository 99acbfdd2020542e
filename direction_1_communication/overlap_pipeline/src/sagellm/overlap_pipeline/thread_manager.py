"""OverlapManager on long-lived worker threads (and a CUDA side stream where present)."""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from typing import Any

from sagellm.overlap_pipeline.cuda_streams import CudaSideStream
from sagellm.overlap_pipeline.errors import ManagerClosedError
from sagellm.overlap_pipeline.pending import PendingWork
from sagellm.overlap_pipeline.stats import OverlapStats
from sagellm.overlap_pipeline.worker_pool import WorkerPool


class ThreadOverlapManager:
    """Registry name ``threads``: comm on a worker thread, compute on the caller's thread.

    Compute stays on the caller's thread because torch keeps grad mode,
    ``set_num_threads`` and the current CUDA stream per thread, and the
    engine's forward pass expects its own. The comm side only has to
    release the GIL (file reads, socket sends, collectives and torch ops
    do) for the two to overlap; pure-Python comm gains nothing.

    Options (``overlap_pipeline.options``): ``num_workers`` (default 1:
    strict FIFO, which collectives need), ``cuda_streams`` ("auto", "on",
    "off"). Statistics per call kind are in :attr:`stats`.
    """

    name = "threads"

    def __init__(self, num_workers: int = 1, cuda_streams: str | bool = "auto") -> None:
        self._side_stream = CudaSideStream.for_mode(cuda_streams)
        self._pool = WorkerPool(num_workers)
        # A manager dropped without close() still stops its threads (and at exit, finishes their work).
        self._stop = weakref.finalize(self, self._pool.close)
        self.stats = OverlapStats()

    @property
    def uses_cuda_streams(self) -> bool:
        return self._side_stream is not None

    def schedule(
        self, compute: Callable[[], Any], comm: Callable[[], Any], *, kind: str = "schedule"
    ) -> tuple[Any, Any]:
        """``(compute(), comm())``, comm running beside compute; both finish before it returns or raises."""
        began = time.perf_counter()
        pending = self._launch(comm, kind=None)
        comp_began = time.perf_counter()
        comp_error: BaseException | None = None
        comp_result: Any = None
        try:
            comp_result = compute()
        except BaseException as exc:  # noqa: BLE001 - re-raised below, after comm finished
            comp_error = exc
        t_comp = time.perf_counter() - comp_began
        pending.join()  # never return or raise while comm still runs
        comm_result, comm_error = pending.outcome()
        self.stats.record(kind, t_comp, pending.run_s, time.perf_counter() - began)
        if comp_error is not None:
            if comm_error is not None and comp_error.__context__ is None:
                comp_error.__context__ = comm_error  # both failed: keep comm's in the traceback
            raise comp_error
        if comm_error is not None:
            raise comm_error
        return comp_result, comm_result

    def start(self, comm: Callable[[], Any], *, kind: str = "start") -> PendingWork:
        """Launch ``comm`` and return at once; ``wait()`` just before the result is needed.

        Recorded at the first wait: T_comm is the comm's run time, T_comp the
        caller's time between ``start`` returning and calling ``wait``.
        """
        return self._launch(comm, kind=kind)

    def close(self) -> None:
        """Finish started work, stop the workers; idempotent."""
        self._stop()

    def _launch(self, comm: Callable[[], Any], kind: str | None) -> PendingWork:
        if self._pool.closed:
            raise ManagerClosedError("overlap manager is closed; no new work is accepted")
        work, join = (comm, None) if self._side_stream is None else self._side_stream.wrap(comm)
        began = time.perf_counter()
        handed = [began]

        def on_wait(pending: PendingWork, wait_called_at: float, now: float) -> None:
            if join is not None:
                join()
            if kind is not None:
                t_comp = max(0.0, wait_called_at - handed[0])  # the caller's work between start() and wait()
                self.stats.record(kind, t_comp, pending.run_s, now - began)

        pending = PendingWork(on_wait)
        self._pool.submit(work, pending)
        handed[0] = time.perf_counter()
        return pending
