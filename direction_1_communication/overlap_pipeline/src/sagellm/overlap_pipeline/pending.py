"""The PendingResult a manager hands out: one piece of work, its outcome, its timings."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

WaitHook = Callable[["PendingWork", float, float], None]
"""Called once, on the waiting thread, when the result is first collected: ``(work, wait_called_at, now)``.

A manager uses it to record statistics and, with CUDA streams, to make the
caller's stream wait for the side stream before the result is used.
"""


class PendingWork:
    """Work started on a worker thread; implements :class:`sagellm.core.protocols.PendingResult`.

    ``wait`` re-raises the work's own exception (not a wrapper) so callers
    catch what the callable raised, as in a serial ``comm()``. Timeouts are
    the builtin ``TimeoutError`` on every Python the package supports
    (``concurrent.futures.TimeoutError`` is a different class before 3.11).
    """

    __slots__ = ("_error", "_event", "_hook", "_hook_lock", "_result", "began_at", "finished_at", "started_at")

    def __init__(self, hook: WaitHook | None = None) -> None:
        self._event = threading.Event()
        self._result: Any = None
        self._error: BaseException | None = None
        self._hook = hook
        self._hook_lock = threading.Lock()
        self.began_at = time.perf_counter()  # handed to the manager
        self.started_at: float | None = None  # a worker began running it
        self.finished_at: float | None = None

    def run(self, work: Callable[[], Any]) -> None:
        """Run ``work`` here and keep its outcome; never raises (the waiter gets the exception)."""
        self.started_at = time.perf_counter()
        try:
            self._result = work()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiter, nothing is dropped
            self._error = exc
        finally:
            self.finished_at = time.perf_counter()
            self._event.set()

    @property
    def run_s(self) -> float:
        """Seconds the work itself ran (0 until it finished)."""
        if self.started_at is None or self.finished_at is None:
            return 0.0
        return self.finished_at - self.started_at

    def done(self) -> bool:
        return self._event.is_set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the work to finish without collecting it; False on timeout."""
        return self._event.wait(timeout)

    def wait(self, timeout: float | None = None) -> Any:
        called_at = time.perf_counter()
        if not self._event.wait(timeout):
            raise TimeoutError(f"overlapped work not done within {timeout} s")
        self._run_hook(called_at)
        if self._error is not None:
            raise self._error
        return self._result

    def outcome(self) -> tuple[Any, BaseException | None]:
        """The finished work's (result, exception) without raising; call after :meth:`join`."""
        self._run_hook(time.perf_counter())
        return self._result, self._error

    def _run_hook(self, called_at: float) -> None:
        with self._hook_lock:
            hook, self._hook = self._hook, None
        if hook is not None:
            hook(self, called_at, time.perf_counter())
