"""Conformance suite for :class:`sagellm.core.protocols.OverlapManager`.

What the engine relies on when it hands work to a manager: ``schedule``
gives back exactly ``(compute(), comm())`` after running each once, an
exception in either reaches the caller with no work of that call still
running, ``start`` returns a :class:`~sagellm.core.protocols.PendingResult`
that waits, re-raises and times out, and ``close`` is final. A manager that
runs the two callables concurrently (``concurrent = True``, the default)
must also overlap them in wall time; the suite checks that with callables
that sleep, since ``time.sleep`` releases the GIL as file reads, socket
sends and torch ops do. A serial reference manager sets ``concurrent =
False`` and is checked to run the work one after the other instead.

Torch-free and pytest-free: plain ``assert`` and :func:`raises`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from sagellm.core.errors import SageLLMError
from sagellm.core.protocols import OverlapManager, PendingResult
from sagellm.core.testing.raises import raises

NAP_S = 0.2  # long enough to dwarf a thread hand-off, short enough for CI
WAIT_S = 10.0  # bound on every wait, so a broken manager fails instead of hanging


class _Boom(Exception):
    """The exception the suite's callables raise; nothing else raises it."""


class _Counter:
    """A callable returning ``value`` that counts its calls (thread-safe)."""

    def __init__(self, value: Any, nap_s: float = 0.0, error: BaseException | None = None) -> None:
        self.value = value
        self.nap_s = nap_s
        self.error = error
        self.calls = 0
        self.finished_at: float | None = None
        self._lock = threading.Lock()

    def __call__(self) -> Any:
        with self._lock:
            self.calls += 1
        if self.nap_s:
            time.sleep(self.nap_s)
        self.finished_at = time.perf_counter()
        if self.error is not None:
            raise self.error
        return self.value


class OverlapManagerConformance:
    """Inherit, implement :meth:`make_manager`, and set ``concurrent = False`` for a serial manager."""

    concurrent: bool = True

    def make_manager(self) -> OverlapManager:
        """A fresh, open manager; the suite closes it when the test ends."""
        raise NotImplementedError

    # ------------------------------------------------------------------ helpers
    def setup_method(self, method: object = None) -> None:
        self._made: list[OverlapManager] = []

    def teardown_method(self, method: object = None) -> None:
        for manager in reversed(getattr(self, "_made", [])):
            manager.close()

    def _manager(self) -> OverlapManager:
        manager = self.make_manager()
        if not hasattr(self, "_made"):
            self._made = []
        self._made.append(manager)
        return manager

    def _gate(self, value: Any) -> tuple[Callable[[], Any], threading.Event]:
        """A callable that returns ``value`` once the event is set (or fails after WAIT_S)."""
        gate = threading.Event()

        def gated() -> Any:
            if not gate.wait(WAIT_S):
                raise _Boom("the gate was never opened")
            return value

        return gated, gate

    # -------------------------------------------------------------------- tests
    def test_implements_the_protocol(self) -> None:
        assert isinstance(self._manager(), OverlapManager)

    def test_schedule_returns_compute_then_comm_results(self) -> None:
        manager = self._manager()
        compute, comm = _Counter("computed"), _Counter(["communicated"])
        assert manager.schedule(compute, comm) == ("computed", ["communicated"])

    def test_schedule_runs_each_callable_exactly_once(self) -> None:
        manager = self._manager()
        compute, comm = _Counter(1, nap_s=0.01), _Counter(2, nap_s=0.01)
        for _ in range(5):
            manager.schedule(compute, comm)
        assert (compute.calls, comm.calls) == (5, 5)

    def test_results_of_successive_calls_do_not_mix(self) -> None:
        manager = self._manager()
        got = [manager.schedule(_Counter(i), _Counter(-i)) for i in range(20)]
        assert got == [(i, -i) for i in range(20)]

    def test_an_exception_in_compute_reaches_the_caller(self) -> None:
        manager = self._manager()
        comm = _Counter("comm", nap_s=0.05)
        with raises(_Boom):
            manager.schedule(_Counter(None, error=_Boom("compute")), comm)
        self._nothing_runs_on(comm)
        assert manager.schedule(_Counter(1), _Counter(2)) == (1, 2)  # still usable

    def test_an_exception_in_comm_reaches_the_caller(self) -> None:
        manager = self._manager()
        compute = _Counter("compute", nap_s=0.05)
        with raises(_Boom):
            manager.schedule(compute, _Counter(None, error=_Boom("comm")))
        assert compute.calls == 1
        assert manager.schedule(_Counter(1), _Counter(2)) == (1, 2)

    def test_start_returns_a_pending_result_with_the_value(self) -> None:
        manager = self._manager()
        pending = manager.start(_Counter({"sum": 3}))
        assert isinstance(pending, PendingResult)
        assert pending.wait(WAIT_S) == {"sum": 3}
        assert pending.done()
        assert pending.wait(0.0) == {"sum": 3}  # a finished result can be asked again

    def test_start_reraises_the_exception_at_wait(self) -> None:
        manager = self._manager()
        pending = manager.start(_Counter(None, error=_Boom("all_reduce failed")))
        with raises(_Boom):
            pending.wait(WAIT_S)
        assert pending.done()

    def test_done_flips_when_the_work_finishes(self) -> None:
        manager = self._manager()
        gated, gate = self._gate("late")
        if not self.concurrent:
            gate.set()  # a serial manager may run the work inside start()
        pending = manager.start(gated)
        if self.concurrent:
            assert not pending.done()
            gate.set()
        assert pending.wait(WAIT_S) == "late"
        assert pending.done()

    def test_wait_times_out_with_timeout_error(self) -> None:
        if not self.concurrent:
            return  # work that runs inside start() is finished before wait is called
        manager = self._manager()
        gated, gate = self._gate("late")
        pending = manager.start(gated)
        began = time.perf_counter()
        with raises(TimeoutError):
            pending.wait(0.05)
        assert time.perf_counter() - began < WAIT_S / 2, "wait ignored its timeout"
        assert not pending.done()
        gate.set()
        assert pending.wait(WAIT_S) == "late"

    def test_sleeping_work_overlaps_in_wall_time(self) -> None:
        manager = self._manager()
        manager.schedule(_Counter(0), _Counter(0))  # warm-up: workers may start lazily
        began = time.perf_counter()
        manager.schedule(_Counter(1, nap_s=NAP_S), _Counter(2, nap_s=NAP_S))
        wall = time.perf_counter() - began
        if self.concurrent:
            assert wall < 1.5 * NAP_S, f"compute and comm did not overlap: {wall:.3f} s for two {NAP_S} s naps"
        else:
            assert wall >= 2 * NAP_S * 0.95, f"a serial manager overlapped: {wall:.3f} s"

    def test_start_overlaps_with_the_callers_work(self) -> None:
        if not self.concurrent:
            return
        manager = self._manager()
        manager.start(_Counter(0)).wait(WAIT_S)  # warm-up
        began = time.perf_counter()
        pending = manager.start(_Counter("comm", nap_s=NAP_S))
        time.sleep(NAP_S)  # the caller's compute
        assert pending.wait(WAIT_S) == "comm"
        wall = time.perf_counter() - began
        assert wall < 1.5 * NAP_S, f"start() did not return at once: {wall:.3f} s"

    def test_close_is_idempotent(self) -> None:
        manager = self._manager()
        manager.schedule(_Counter(1), _Counter(2))
        manager.close()
        manager.close()

    def test_close_waits_for_started_work(self) -> None:
        manager = self._manager()
        comm = _Counter("slow", nap_s=NAP_S)
        pending = manager.start(comm)
        manager.close()
        assert comm.calls == 1 and comm.finished_at is not None, "close returned before the started work finished"
        assert pending.done()
        assert pending.wait(0.0) == "slow"

    def test_use_after_close_is_an_error(self) -> None:
        manager = self._manager()
        manager.close()
        compute, comm = _Counter(1), _Counter(2)
        with raises(SageLLMError):
            manager.schedule(compute, comm)
        with raises(SageLLMError):
            manager.start(comm)
        assert (compute.calls, comm.calls) == (0, 0), "a closed manager ran work"

    def _nothing_runs_on(self, work: _Counter) -> None:
        """After ``schedule`` raised, no callable of that call may still be running."""
        calls, finished_at = work.calls, work.finished_at
        assert calls <= 1
        if calls == 1:
            assert finished_at is not None, "schedule raised while comm was still running"
        time.sleep(0.1)
        assert (work.calls, work.finished_at) == (calls, finished_at), "work of a failed call ran on afterwards"
