"""The serial reference: compute, then comm, on the caller's thread."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sagellm.overlap_pipeline.errors import ManagerClosedError
from sagellm.overlap_pipeline.pending import PendingWork
from sagellm.overlap_pipeline.stats import OverlapStats


class SerialOverlapManager:
    """Registry name ``serial``: no overlap at all, the schedule every other manager must match.

    It is the baseline of E (its T_both is T_comp + T_comm plus nothing) and
    of "same tokens as the serial schedule": an engine run with ``serial``
    and one with ``threads`` must produce identical outputs. ``start`` runs
    the work at once, so ``wait`` never blocks.
    """

    name = "serial"

    def __init__(self) -> None:
        self._closed = False
        self.stats = OverlapStats()

    def schedule(
        self, compute: Callable[[], Any], comm: Callable[[], Any], *, kind: str = "schedule"
    ) -> tuple[Any, Any]:
        self._check_open()
        began = time.perf_counter()
        comp_result = compute()
        comp_done = time.perf_counter()
        comm_result = comm()
        done = time.perf_counter()
        self.stats.record(kind, comp_done - began, done - comp_done, done - began)
        return comp_result, comm_result

    def start(self, comm: Callable[[], Any], *, kind: str = "start") -> PendingWork:
        self._check_open()
        handed: list[float] = []

        def on_wait(pending: PendingWork, wait_called_at: float, now: float) -> None:
            t_comp = max(0.0, wait_called_at - handed[0])
            self.stats.record(kind, t_comp, pending.run_s, now - pending.began_at)

        pending = PendingWork(on_wait)
        pending.run(comm)
        handed.append(time.perf_counter())
        return pending

    def close(self) -> None:
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise ManagerClosedError("overlap manager is closed; no new work is accepted")
